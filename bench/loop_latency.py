"""Seconds from a file landing to its ingest run starting, and to the retrain starting, under the daemon.

Run: .venv/bin/python bench/loop_latency.py [--interval 30]

Starts `mlops-assets ui` (what `make dev` runs: the guarded webserver and the daemon) on a fresh
MLOPS_HOME with the seeded first file, waits until the daemon has ingested and retrained it, then lands the held-back file and times,
from the moment it lands: the ingest run's start and the retraining run's start. The sensors
look every ``--interval`` seconds (MLOPS_SENSOR_INTERVAL_SECONDS); the figures are dominated by
it. Only 127.0.0.1 is used.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quick import parse_args  # noqa: E402
from mlops_assets_tests import dagster_dev  # noqa: E402
from mlops_assets_tests.conftest import subprocess_env  # noqa: E402
from mlops_assets_tests.dagster_dev import runs, wait_for  # noqa: E402
from mlops_assets_tests.serving_support import BIN, free_port  # noqa: E402


def started_runs(port: int) -> list[dict]:
    return [r for r in runs(port) if r["startTime"]]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interval", type=int, default=30)
    args = parse_args(parser, interval=5)
    home = Path(tempfile.mkdtemp(prefix="mlops-bench-loop-")) / "mlops"
    env = subprocess_env(home) | {
        "MLOPS_SENSOR_INTERVAL_SECONDS": str(args.interval),
        "MLOPS_PRODUCTION_PORT": str(free_port()),
        "MLOPS_QA_PORT": str(free_port()),
    }
    for command in (["seed"], ["instance"]):
        subprocess.run([str(BIN / "mlops-assets"), *command], env=env, check=True, capture_output=True)
    port = free_port()
    server = dagster_dev.start(env, port)
    try:
        dagster_dev.wait_for_asset_graph(server, port)
        wait_for("the first retrain", lambda: [r for r in runs(port) if r["jobName"] == "retraining_job"
                                               and r["status"] == "SUCCESS"], 600)  # fmt: skip
        from mlops_assets.ingest.seed import land_held_back
        from mlops_assets.storage.fsstore import Storage

        landed_at = time.time()
        from mlops_assets_tests.projects import DIABETES

        land_held_back(Storage((home / "storage").as_uri()), DIABETES)
        ingest = wait_for("the ingest run", lambda: [r for r in started_runs(port) if r["jobName"] == "ingest_job"
                          and r["tags"].get("dagster/partition") == "diabetes-part-2.csv"], 600)[0]  # fmt: skip
        retrain = wait_for("the retrain", lambda: [r for r in started_runs(port) if r["jobName"] == "retraining_job"
                           and r["startTime"] > ingest["startTime"]], 600)[0]  # fmt: skip
        print(f"sensor interval {args.interval} s (MLOPS_SENSOR_INTERVAL_SECONDS)")
        print(f"file landed -> ingest run started:  {ingest['startTime'] - landed_at:6.1f} s")
        print(f"file landed -> retrain run started: {retrain['startTime'] - landed_at:6.1f} s")
    finally:
        dagster_dev.stop(server)
        subprocess.run([str(BIN / "mlops-assets"), "down"], env=env, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
