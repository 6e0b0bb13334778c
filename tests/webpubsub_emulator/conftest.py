from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[WebPubSubEmulator]:
    """One ``webpubsub-emulator`` without event handler per test module."""
    with start_webpubsub_emulator("--reconnect-window", "5") as running:
        yield running
