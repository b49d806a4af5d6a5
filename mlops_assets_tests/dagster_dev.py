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
_LOGS: dict[int, Path] = {}
ASSET_NODES = "{ assetNodes { id } }"
LOCATIONS = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError "
    "{ __typename ... on PythonError { message } } } } } }"
)
RUNS = "{ runsOrError { ... on Runs { results { runId jobName status creationTime startTime tags { key value } } } } }"


def start(env: dict[str, str], port: int, log: Path | None = None) -> subprocess.Popen:
    """With default signal handling, or a backgrounded daemon ignores SIGTERM (DESIGN.md). The
    webserver's and daemon's stderr go to ``log`` (else a file in the home), quoted by
    ``wait_for_asset_graph`` when the UI does not come up."""
    command = [
        shutil.which("env"),
        "--default-signal=INT,TERM",
        str(BIN / "mlops-assets"),
        "ui",
        "--port",
        str(port),
    ]
    _HOMES[port] = Path(env["MLOPS_HOME"])
    _LOGS[port] = log or Path(env["MLOPS_HOME"]).with_name(f"ui-{port}.log")
    with open(_LOGS[port], "ab") as stderr:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )


def wait_for_asset_graph(server: subprocess.Popen, port: int, query: str = ASSET_NODES, timeout: float = 180):
    """``query``'s data once the code location has loaded. Fails at once when the server exits or
    the location loads with an error, else at the timeout; each failure quotes the server's log."""

    def loaded():
        if server.poll() is not None:
            raise AssertionError(f"the UI exited with {server.returncode}")
        entries = graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
        for entry in entries:
            error = entry["locationOrLoadError"] or {}
            if error.get("__typename") == "PythonError":
                raise AssertionError(f"code location {entry['name']} failed to load: {error['message']}")
        data = graphql(port, query)
        return data if data["assetNodes"] else None

    try:
        return wait_for("the UI to load the code location", loaded, timeout)
    except AssertionError as failed:
        raise AssertionError(f"{failed}; the UI's log ends:\n{_log_tail(port)}") from None


def _log_tail(port: int, lines: int = 40) -> str:
    try:
        return "\n".join(_LOGS[port].read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


def token(port: int) -> str:
    """The UI token of the home served on ``port`` (made by the UI at its first start)."""
    return (_HOMES[port] / "secrets" / "ui-token").read_text().strip()


def stop(server: subprocess.Popen, timeout: float = 60) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group has exited already
        server.wait()
        return
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
