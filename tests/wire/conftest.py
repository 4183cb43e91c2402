"""Fixtures of the wire tier: the test PKI and the recording API server, one per session, and
the real proxies (tests/wire/proxy_lab.py), one per session too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wire import pki as pki_module
from tests.wire.pki import Pki
from tests.wire.proxy_lab import ProxyLab, missing_tools
from tests.wire.recorder import RecordingApiServer


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return pki_module.make(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def api_server(pki: Pki) -> Iterator[RecordingApiServer]:
    server = RecordingApiServer(pki).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxy_lab(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ProxyLab]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/netlab-deps.sh installs them)")
    lab = ProxyLab(tmp_path_factory.mktemp("proxies"), pki).start()
    yield lab
    lab.stop()
