"""`mlops-assets ui` (what `make dev` runs: the guarded webserver and the daemon) on 127.0.0.1 for
the tests and benchmarks, and its GraphQL API, sent with the home's UI token."""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from mlops_assets_tests.conftest import REPO
from mlops_assets_tests.serving_support import BIN

_HOMES: dict[int, Path] = {}
RUNS = "{ runsOrError { ... on Runs { results { runId jobName status creationTime startTime tags { key value } } } } }"


def start(env: dict[str, str], port: int, log=subprocess.DEVNULL) -> subprocess.Popen:
    """With default signal handling, or a backgrounded daemon ignores SIGTERM (DESIGN.md)."""
    command = [
        shutil.which("env"),
        "--default-signal=INT,TERM",
        str(BIN / "mlops-assets"),
        "ui",
        "--port",
        str(port),
    ]
    _HOMES[port] = Path(env["MLOPS_HOME"])
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
    )


def token(port: int) -> str:
    """The UI token of the home served on ``port`` (made by the UI at its first start)."""
    return (_HOMES[port] / "secrets" / "ui-token").read_text().strip()


def stop(server: subprocess.Popen, timeout: float = 60) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token(port)}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def runs(port: int) -> list[dict]:
    found = graphql(port, RUNS)["runsOrError"]["results"]
    for run in found:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return found


def wait_for(description: str, condition, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = condition()
        except (OSError, KeyError, TypeError):
            found = None
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {description}")
