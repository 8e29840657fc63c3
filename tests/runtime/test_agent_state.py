"""agent_runtime.agent_state: the reference agent keeping conversations in a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.pgtemp import TempPostgres
from tests.runtime.test_agent import Agent


@pytest.fixture(scope="module")
def pg() -> Iterator[TempPostgres]:
    server = TempPostgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stateful(pg):
    agent = Agent(AGENT_DATABASE_DSN=f"postgresql://{pg.user}@{pg.host}:{pg.port}/postgres",
                  PGPASSWORD=pg.password)
    yield agent
    agent.stop()


def _remember(agent, conversation: str, text: str):
    return agent.request("POST", "/v1/chat/remember", {"conversation": conversation, "text": text},
                         headers={"content-type": "application/json"})


def test_messages_are_stored_per_conversation_and_read_back_in_order(stateful, pg):
    for text in ("first", "second"):
        status, _, body = _remember(stateful, "c-ordered", text)
        assert status == 201, body
        assert json.loads(body)["pod"] == "agent-0"
    _remember(stateful, "c-other", "elsewhere")
    status, _, body = stateful.request("GET", "/v1/chat/history?conversation=c-ordered")
    assert status == 200
    assert [m["text"] for m in json.loads(body)["messages"]] == ["first", "second"]
    # In the database itself, not in the process: a second agent reads the same history.
    assert pg.psql("SELECT count(*) FROM agent_messages WHERE conversation = 'c-ordered'") == "2"


def test_a_second_replica_sees_what_the_first_stored(stateful, pg):
    _remember(stateful, "c-shared", "from replica one")
    other = Agent(AGENT_DATABASE_DSN=f"postgresql://{pg.user}@{pg.host}:{pg.port}/postgres",
                  PGPASSWORD=pg.password, POD_NAME="agent-1")
    try:
        status, _, body = other.request("GET", "/history?conversation=c-shared")
        assert status == 200
        assert [(m["text"], m["pod"]) for m in json.loads(body)["messages"]] == [("from replica one", "agent-0")]
    finally:
        other.stop()


@pytest.mark.parametrize("body, field", [
    ({"text": "no conversation"}, "conversation"), ({"conversation": "c", "text": ""}, "text"),
    ({"conversation": "c" * 201, "text": "x"}, "conversation"), ({"conversation": "c", "text": 7}, "text"),
])
def test_a_bad_message_gets_one_400_naming_the_field(stateful, body, field):
    status, _, raw = stateful.request("POST", "/remember", body)
    assert status == 400
    assert json.loads(raw)["error"].startswith(f"{field}:")


def test_without_a_database_the_state_paths_say_so():
    agent = Agent()
    try:
        status, _, body = agent.request("GET", "/history?conversation=c")
        assert status == 404 and "keeps no state" in json.loads(body)["error"]
    finally:
        agent.stop()


def test_a_database_outage_is_a_503_with_retry_after_and_the_agent_stays_ready():
    # Durable commits: the crash below must lose nothing that was answered with 201.
    server = TempPostgres(fsync=True)
    server.start()
    agent = Agent(AGENT_DATABASE_DSN=f"postgresql://{server.user}@{server.host}:{server.port}/postgres",
                  PGPASSWORD=server.password)
    try:
        assert _remember(agent, "c-outage", "before")[0] == 201
        server.crash()
        status, headers, body = _remember(agent, "c-outage", "during")
        assert status == 503 and headers["retry-after"] == "1", body
        assert agent.request("GET", "/readyz")[0] == 200
        server.server.start(server.server_settings)
        # The pool was dropped at the failure, so the first call after the restart connects anew.
        assert _remember(agent, "c-outage", "after")[0] == 201
        _, _, body = agent.request("GET", "/history?conversation=c-outage")
        assert [m["text"] for m in json.loads(body)["messages"]] == ["before", "after"]
        _, _, metrics = agent.request("GET", "/metrics")
        assert b"agent_state_errors_total 1" in metrics
    finally:
        agent.stop()
        server.stop()
