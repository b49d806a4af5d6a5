"""Azurite, the Azure Storage emulator, as a real process on 127.0.0.1 for the tests."""

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mlops_assets_tests.ports import free_port

REPO = Path(__file__).resolve().parents[1]
MAIN = REPO / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
# Azurite's documented development account (public, the same in every emulator).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class Azurite:
    port: int

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.account_url};"
        )


def start(location: Path) -> tuple[subprocess.Popen, Azurite]:
    port = free_port()
    return start_on(location, port)


def start_on(location: Path, port: int) -> tuple[subprocess.Popen, Azurite]:
    """Azurite on ``port`` over ``location`` (restarting on the same folder keeps every blob)."""
    if not MAIN.exists():
        raise RuntimeError(f"{MAIN} is missing: run `make test` (it runs `npm ci`) or `npm ci`")
    location.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            "node",
            str(MAIN),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited: {process.stderr.read().decode()[-1000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, Azurite(port)
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("Azurite did not listen within 30 s") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)  # SIGKILL loses recent writes
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
