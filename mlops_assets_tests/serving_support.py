"""Releases made in the test and the real scoring service run as a subprocess on 127.0.0.1."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import skops.io as sio

from mlops_assets.model.artifact import sha256_hex
from mlops_assets_tests.ports import free_port as free_port
from mlops_assets_tests.projects import DIABETES, FEATURES, diabetes_frame, fit_diabetes, split_seed

BIN = Path(sys.executable).parent
# Two rows of the held-back seed data.
SAMPLE = {"data": split_seed(diabetes_frame())[1][FEATURES].head(2).to_numpy().tolist()}


def write_release(folder: Path, version: int, alpha: float = 0.5, tamper: bool = False):
    """A model trained here, laid out as the release pipeline lays it out: artifact + manifest."""
    first = split_seed(diabetes_frame())[0]
    model = fit_diabetes(first, alpha)
    artifact = sio.dumps(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.skops").write_bytes(artifact + (b"tampered" if tamper else b""))
    manifest = {
        "model_name": DIABETES.name,
        "version": version,
        "artifact": "model.skops",
        "sha256": sha256_hex(artifact),
        "features": list(FEATURES),
        "training_data_version": "test",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return model


def break_folder(folder: Path) -> None:
    """A file where the folder was: every write under it fails, as on a full disk."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.write_text("not a folder")


def repair_folder(folder: Path) -> None:
    folder.unlink()
    folder.mkdir()


def service_with_own_log(tmp_path: Path) -> tuple["Service", Path, Path]:
    """A live service (version 1) whose request log writes under ``tmp_path/logs`` and spills to
    ``tmp_path/spill``: the two folders a test breaks to fill the disk."""
    home = tmp_path / "mlops"
    write_release(home / "release", version=1)
    logs, spill = tmp_path / "logs", tmp_path / "spill"
    logs.mkdir()
    env = {"MLOPS_SCORING_LOG_URL": str(logs), "MLOPS_SCORING_SPILL_DIR": str(spill)}
    return Service(home, home / "release", env=env).wait_live(), logs, spill


def predictions(model, payload=SAMPLE) -> list[float]:
    return model.predict(pd.DataFrame(payload["data"], columns=FEATURES, dtype=float)).tolist()


class Service:
    """``mlops-assets serve`` in its own process group; stop() sends SIGTERM and waits."""

    def __init__(
        self,
        home: Path,
        model_dir: Path,
        env: dict[str, str] | None = None,
        workers: int = 1,
        executable: Path | None = None,
        port: int | None = None,
    ):
        self.home, self.port = home, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_"))}
        base |= {
            "MLOPS_HOME": str(home),
            "MLOPS_SCORING_KEYS": "key-one",
            "MLOPS_SCORING_LOG_FLUSH_SECONDS": "0.2",
            "MLOPS_MODEL_POLL_SECONDS": "0.2",
        }
        base |= env or {}
        command = [
            str(executable or BIN / "mlops-assets"),
            "serve",
            "--model-dir",
            str(model_dir),
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.stderr_path = home / f"serve-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        with open(self.stderr_path, "w") as stderr:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                command,
                env=base,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )

    def wait_live(self, timeout: float = 60) -> "Service":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"service not live in {timeout}s: {self.log()}")

    def wait_version(self, version: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.url}/health/ready", timeout=1)
            if response.status_code == 200 and response.json()["version"] == version:
                return
            time.sleep(0.05)
        raise TimeoutError(f"version {version} not served in {timeout}s: {self.log()}")

    def score(self, payload=SAMPLE, key: str | None = "key-one", **headers) -> httpx.Response:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.post(f"{self.url}/score", json=payload, headers=headers, timeout=10)

    def log(self) -> str:
        return self.stderr_path.read_text()[-4000:]

    def wait_logged(self, text: str, timeout: float = 30) -> None:
        """Until the service's log says ``text``: what it did, not a guess at how long it takes."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr_path.read_text():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not logged in {timeout}s: {self.log()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                raise
        return self.process.returncode


def logged_records(storage_root: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((storage_root / "scoring-logs").rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


class Hammer:
    """Keep-alive clients posting the sample until stopped; every answer or error is kept."""

    def __init__(self, url: str, key: str, clients: int = 3) -> None:
        import threading

        self.url, self.key = url, key
        self.statuses: list[int] = []
        self.versions: list[str | None] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(
                        f"{self.url}/score", json=SAMPLE, headers={"Authorization": f"Bearer {self.key}"}
                    )
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.statuses.append(response.status_code)
                self.versions.append(response.headers.get("x-model-version"))

    def __enter__(self) -> "Hammer":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def failures(self) -> dict:
        """Empty when every request got a 200."""
        failed = {str(s): self.statuses.count(s) for s in set(self.statuses) if s != 200}
        return {
            **failed,
            **({"errors": self.errors[:5], "error_count": len(self.errors)} if self.errors else {}),
        }


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


class LoopbackTransport(asyncio.Transport):
    """What uvicorn's protocol writes to, kept in memory: no socket, no kernel, no client."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
