"""Shared fixtures: a temp MLOPS_HOME and a real Dagster instance in it; no traffic off 127.0.0.1."""

import ipaddress
import os
import socket
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.core.instance import write_instance_config
from mlops_assets.core.storage import Storage
from mlops_assets.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address) -> bool:
    if not isinstance(address, tuple):  # unix sockets
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded(real):
    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
            raise ConnectionRefusedError(f"test tried to reach {address}: only 127.0.0.1 is allowed")
        return real(sock, address)

    return connect


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """Any connection off this machine fails the test that made it (telemetry, metadata probes)."""
    monkeypatch.setattr(socket.socket, "connect", _guarded(_real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded(_real_connect_ex))


@pytest.fixture
def settings(tmp_path, monkeypatch, request) -> Settings:
    home = tmp_path / "mlops"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    # A test's sensor looks at files the test has just written; the settle test sets its own.
    monkeypatch.setenv("MLOPS_LANDING_SETTLE_SECONDS", "0")
    # Tests pick their image builder explicitly: the container tests build images, the rest none.
    monkeypatch.setenv("MLOPS_IMAGE_ENGINES", "")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    if "podman" in request.fixturenames:  # what `make clean` does: the temp home's images go with it
        from mlops_assets.hosting.engines import Engine
        from mlops_assets.hosting.image_holds import let_go

        let_go(Engine("podman"), home.resolve(), keep=set())


@pytest.fixture
def storage(settings) -> Storage:
    return Storage(settings.storage_root)


@pytest.fixture
def instance(settings):
    write_instance_config(settings.dagster_home)
    with dg.DagsterInstance.get() as instance:
        assert Path(instance.root_directory) == settings.dagster_home
        yield instance


@pytest.fixture
def defs(settings):
    from mlops_assets.definitions import build_definitions

    return build_definitions(settings)


def subprocess_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_"))}
    env |= {"MLOPS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "MLOPS_IMAGE_ENGINES": ""}
    return env


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """One Azurite blob service for the session; tests use their own containers."""
    from mlops_assets_tests import azurite as emulator

    process, service = emulator.start(tmp_path_factory.mktemp("azurite"))
    yield service
    emulator.stop(process)


@pytest.fixture
def webhook():
    """A webhook receiver on 127.0.0.1 keeping every JSON body posted to it."""
    from mlops_assets_tests.webhook import Receiver

    with Receiver() as receiver:
        yield receiver
