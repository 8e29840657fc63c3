"""The reference agent's optional state: the messages of each conversation, kept in PostgreSQL.

What a stateful agent keeps in the platform's agent database, so that the node tier can show the
path from agents to their database working and the disaster drill can count rows lost. The
connection comes from AGENT_DATABASE_DSN (a libpq URI, `postgresql://user@host:port/db`) and
PGPASSWORD, read the way libpq reads them. The table is created on first use; a database that is
down answers 503 with Retry-After (the gateway may retry the idempotent reads elsewhere), and the
agent itself stays alive and ready: its runs need no database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import asyncpg

TABLE = "agent_messages"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    conversation text NOT NULL,
    pod text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {TABLE}_conversation ON {TABLE} (conversation, id);
"""
CONNECT_TIMEOUT_SECONDS = 3.0
QUERY_TIMEOUT_SECONDS = 5.0
HISTORY_LIMIT = 1000


class StateUnavailable(Exception):
    """The database cannot be reached or answered with an error: the client may retry."""


@dataclass(frozen=True)
class Message:
    id: int
    conversation: str
    pod: str
    body: str
    created_at: datetime

    def to_json(self) -> dict:
        return {"id": self.id, "conversation": self.conversation, "pod": self.pod, "text": self.body,
                "created_at": self.created_at.isoformat()}


class ConversationStore:
    """A small pool of connections, opened on first use and again after the database comes back."""

    def __init__(self, dsn: str, pod: str) -> None:
        self.dsn = dsn
        self.pod = pod
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self.errors = 0

    async def _ready_pool(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=4,
                                                 timeout=CONNECT_TIMEOUT_SECONDS,
                                                 command_timeout=QUERY_TIMEOUT_SECONDS)
                try:
                    async with pool.acquire() as conn:
                        # Several replicas start at once: the DDL runs under one advisory lock.
                        async with conn.transaction():
                            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", TABLE)
                            await conn.execute(SCHEMA)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool

    async def _run(self, query: str, *args):
        try:
            pool = await self._ready_pool()
            return await pool.fetch(query, *args)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.errors += 1
            # A restored or replaced server: the next call opens a fresh pool.
            await self.close()
            raise StateUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def remember(self, conversation: str, text: str) -> Message:
        rows = await self._run(
            f"INSERT INTO {TABLE} (conversation, pod, body) VALUES ($1, $2, $3) "
            "RETURNING id, conversation, pod, body, created_at", conversation, self.pod, text)
        return Message(*rows[0].values())

    async def history(self, conversation: str) -> list[Message]:
        rows = await self._run(
            f"SELECT id, conversation, pod, body, created_at FROM {TABLE} WHERE conversation = $1 "
            f"ORDER BY id LIMIT {HISTORY_LIMIT}", conversation)
        return [Message(*row.values()) for row in rows]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
