"""landing_sensor's tick time with many files under landing/ (local storage, real SQLite instance).

Run: .venv/bin/python bench/landing.py [--files 5000] [--unusable 50] [--file-mb 0]

Prints the first tick (every file new: partitions + the capped run requests) and the steady
state (every file already has its run: the tick must find nothing to do), median of 5 ticks.
``--unusable`` more files have names no partition key can take (``...``, a tab, over 200 bytes):
each tick skips them with a reason, and the figures include that.
Only the local disk is used.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quick import parse_args  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--unusable", type=int, default=50, help="extra files with names no run can take")
    parser.add_argument("--file-mb", type=float, default=0, help="pad each file to about this size")
    args = parse_args(parser, files=40, unusable=3)
    home = Path(tempfile.mkdtemp(prefix="mlops-bench-landing-"))
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")

    import dagster as dg

    from mlops_assets.core.file_sensors import RUN_KEY_TAG, SENSOR_NAME_TAG
    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.core.partition_names import unusable_name
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.automation import LANDING_SENSOR, plan_landing
    from mlops_assets.settings import get_settings
    from mlops_assets_tests.projects import diabetes_frame

    settings = get_settings()
    write_instance_config(settings.dagster_home)
    defs = build_definitions(settings)
    storage = defs.resources["storage"].get()
    rows = diabetes_frame().head(20).to_csv(index=False).encode()
    if args.file_mb:
        header, body = rows.split(b"\n", 1)
        rows = header + b"\n" + body * max(1, int(args.file_mb * 2**20 / len(body)))
    for i in range(args.files):
        storage.write_bytes(f"landing/batch-{i:05d}.csv", rows.replace(b"\n", f"\n{i % 7}".encode(), 0))
    bad_names = ["a...{}.csv", "tab\t{}.csv", "x" * 201 + "{}.csv"]
    for i in range(args.unusable):
        storage.write_bytes("landing/" + bad_names[i % len(bad_names)].format(i), rows)
    print(
        f"{args.files} files of {len(rows)} bytes under landing/, and {args.unusable} unusable names ({home})"
    )

    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        first = plan_landing(storage, instance)
        print(
            f"first tick: {time.perf_counter() - started:.2f} s, {len(first.run_requests)} run requests (cap), "
            f"{len(first.skipped)} skipped with a reason"
        )

        # Steady state: every file has had its run (as the daemon would have launched them).
        from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
        from dagster._core.utils import make_new_run_id

        made = time.perf_counter()
        for file in storage.list_files("landing"):
            key = file.path.removeprefix("landing/")
            if unusable_name(key):
                continue
            tags = {RUN_KEY_TAG: f"{key}@{file.version}", SENSOR_NAME_TAG: LANDING_SENSOR}
            instance.add_run(
                DagsterRun(
                    job_name="ingest_job",
                    run_id=make_new_run_id(),
                    tags=tags,
                    status=DagsterRunStatus.SUCCESS,
                )
            )
        print(f"(recorded {args.files} runs in {time.perf_counter() - made:.0f} s)")
        ticks = []
        for _ in range(5):
            started = time.perf_counter()
            plan = plan_landing(storage, instance)
            ticks.append(time.perf_counter() - started)
            assert not plan.run_requests, plan.run_requests[:3]
            assert len(plan.skipped) == args.unusable
        print(
            f"steady-state tick: median {statistics.median(ticks):.2f} s, min {min(ticks):.2f}, max {max(ticks):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
