"""Fixtures of the wire tier: the test PKI and the recording API server, one per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wire import pki as pki_module
from tests.wire.pki import Pki
from tests.wire.recorder import RecordingApiServer


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return pki_module.make(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def api_server(pki: Pki) -> Iterator[RecordingApiServer]:
    server = RecordingApiServer(pki).start()
    yield server
    server.stop()
