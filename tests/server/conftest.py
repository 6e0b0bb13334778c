"""Fixtures for the app server tests: a ``chat-server`` whose REST calls go to a recorder standing in for Azure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.rest_recorder import RestRecorder
from tests.support.browser import browser  # noqa: F401  (pytest finds fixtures by name)
from tests.support.fixtures import js_peer  # noqa: F401
from tests.support.stack import ChatServer, start_chat_server

# Distinctive, so a test can prove it never appears in any output.
ACCESS_KEY = "SrvTestKey0000DoNotPrint1111abcdefghijklmnop2222"


@pytest.fixture(scope="module")
def recorder() -> Iterator[RestRecorder]:
    rec = RestRecorder(ACCESS_KEY).start()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def server(recorder: RestRecorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    """One ``chat-server`` whose REST calls go to :func:`recorder`; run from an empty directory (no ``.env``)."""
    srv = start_chat_server(
        recorder.connection_string(), "--service-mode", "serverless", cwd=tmp_path_factory.mktemp("srv")
    )
    yield srv
    srv.stop()


@pytest.fixture
def rest(recorder: RestRecorder) -> RestRecorder:
    """The recorder, emptied before the test."""
    recorder.clear()
    return recorder
