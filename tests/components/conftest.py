"""Fixtures for building one component alone under Pulumi mocks."""

from __future__ import annotations

import asyncio

import pulumi
import pytest

from tests.conftest import PROJECT, RecordingMocks


@pytest.fixture
def mocked_engine(event_loop_per_test) -> RecordingMocks:
    """Mocks for constructing a component directly (not through the program), so a test can hand
    it input no stack file would pass; `reset_options()` afterwards, as for `run_stack`."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="test", preview=False)
    yield mocks
    # Let the registrations the component started finish on this loop, before it is closed.
    loop = event_loop_per_test
    loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop), return_exceptions=True))
    pulumi.runtime.reset_options()
