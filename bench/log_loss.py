"""Request-log records answered vs stored, under a full disk and under SIGKILL, during load.

Run: .venv/bin/python bench/log_loss.py [--duration 30] [--connections 16]

Production as a local deployment runs it: `mlops-assets-supervise` holding the socket, running
`mlops-assets serve --workers 2` on it, the request log at its default flush window
(MLOPS_SCORING_LOG_FLUSH_SECONDS=1). wrk drives 1-row requests for ``--duration`` seconds, twice:

- disk-full: from a third of the run to two thirds, the log's storage folder and its spill folder
  both fail (a file where each folder was); then room returns, without a restart;
- SIGKILL: at half the run every `mlops-assets serve` process (the server and its workers) is
  killed at once; the supervisor starts it again on the same socket.

Each run then stops the service with SIGTERM (which flushes) and counts the records stored. It
prints requests answered 200 and not, records stored, lost (answered 200 with no record) and
duplicated; for SIGKILL also the seconds until /health/ready answers again and the bound README
states: the records of one flush window (window x requests/s). Only 127.0.0.1 is used.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quick import parse_args  # noqa: E402
from bench.scoring import post_script, wrk_post  # noqa: E402
from mlops_assets_tests.serving_support import (  # noqa: E402
    SAMPLE,
    break_folder,
    free_port,
    repair_folder,
    write_release,
)

BIN = Path(sys.executable).parent
FLUSH_SECONDS = 1.0  # the default: the window README's bound is stated for


class Production:
    """A supervised service as a local deployment runs it, with its own request-log folders."""

    def __init__(self, work: Path) -> None:
        self.work = work
        write_release(work / "release", version=1)
        self.logs, self.spill = work / "logs", work / "spill"
        self.logs.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.status = work / "status.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_"))} | {
            "MLOPS_HOME": str(work / "home"),
            "MLOPS_SCORING_KEYS": "key-one",
            "MLOPS_SCORING_LOG_URL": str(self.logs),
            "MLOPS_SCORING_SPILL_DIR": str(self.spill),
            "MLOPS_SCORING_LOG_FLUSH_SECONDS": str(FLUSH_SECONDS),
        }
        command = [
            str(BIN / "mlops-assets-supervise"),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--share-at",
            f"@mlops-bench-{uuid.uuid4().hex[:8]}",
            "--status",
            str(self.status),
            "--",
            str(BIN / "mlops-assets"),
            "serve",
            "--model-dir",
            str(work / "release"),
            "--listen-fd",
            "3",
            "--workers",
            "2",
        ]
        with open(work / "supervisor.log", "w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready(120)

    def wait_ready(self, timeout: float) -> float:
        """Seconds until /health/ready answers 200 (a request sent now queues while nothing serves)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=timeout).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                time.sleep(0.01)
        raise TimeoutError(f"not ready in {timeout}s: {(self.work / 'supervisor.log').read_text()[-2000:]}")

    def kill_every_serve_process(self) -> int:
        server = json.loads(self.status.read_text())["service_pid"]
        children = subprocess.run(["pgrep", "-P", str(server)], capture_output=True, text=True).stdout.split()
        pids = [server, *map(int, children)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # the service drains and flushes, then the supervisor exits
        self.process.wait(120)

    def stored_ids(self) -> list[str]:
        ids = []
        for path in (self.logs / "scoring-logs").rglob("*.jsonl"):
            ids += [json.loads(line)["request_id"] for line in path.read_text().splitlines() if line]
        return ids


def run(work: Path, fault: str, connections: int, duration: int) -> dict:
    production = Production(work)
    body = work / "body.json"
    body.write_text(json.dumps(SAMPLE))
    script = post_script(work, body, {"Authorization": "Bearer key-one"})
    figures: dict = {}

    def disk_full() -> None:
        stored, kept = production.logs / "scoring-logs", production.logs / "kept"
        time.sleep(duration / 3)
        stored.rename(kept)  # what was stored stays; the log's folder and the spill folder fail
        break_folder(stored)
        break_folder(production.spill)
        time.sleep(duration / 3)
        repair_folder(production.spill)
        stored.unlink()
        kept.rename(stored)

    def sigkill() -> None:
        time.sleep(duration / 2)
        figures["killed"] = production.kill_every_serve_process()
        figures["back_seconds"] = production.wait_ready(60)

    injector = threading.Thread(target=disk_full if fault == "disk-full" else sigkill)
    try:
        injector.start()
        figures |= wrk_post(production.url, script, connections, duration)
        injector.join()
        if fault == "disk-full":
            production.wait_ready(60)  # delivered and ready again, no restart
    finally:
        production.stop()
    ids = production.stored_ids()
    answered = figures["requests"] - figures["non2xx"]
    return figures | {"answered": answered, "stored": len(set(ids)), "duplicates": len(ids) - len(set(ids))}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--connections", type=int, default=16)
    args = parse_args(parser, duration=6, connections=4)
    work = Path(tempfile.mkdtemp(prefix="mlops-log-loss-"))
    results = {
        fault: run(work / fault, fault, args.connections, args.duration) for fault in ("disk-full", "sigkill")
    }
    print(
        f"{'fault':10s} {'answered 200':>12s} {'not 200':>8s} {'refused':>8s} {'cut':>5s} {'stored':>8s} "
        f"{'lost':>6s} {'dup':>5s}"
    )
    for fault, r in results.items():
        cut = r["socket_errors"] - r["refused"]  # in flight in a killed process: no answer, no record
        print(
            f"{fault:10s} {r['answered']:>12,d} {r['non2xx']:>8,d} {r['refused']:>8,d} {cut:>5,d} {r['stored']:>8,d} "
            f"{max(0, r['answered'] - r['stored']):>6,d} {r['duplicates']:>5d}"
        )
    print("(stored beyond answered: responses that arrived after wrk stopped counting)")
    kill = results["sigkill"]
    print(
        f"SIGKILL of {kill['killed']} serve processes: /health/ready answered again after "
        f"{kill['back_seconds']:.2f} s; the stated bound, one flush window of records: "
        f"{FLUSH_SECONDS:g} s x {kill['rps']:,.0f} requests/s = {FLUSH_SECONDS * kill['rps']:,.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
