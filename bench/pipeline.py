"""Wall time of ingest_job and retraining_job, cold (first run in a fresh process) and warm, per step.

Run: make bench   (or .venv/bin/python bench/pipeline.py [--repeat N])
Everything happens under a temporary MLOPS_HOME; nothing leaves 127.0.0.1.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quick import parse_args


def step_times(instance, run_id: str) -> dict[str, float]:
    from dagster import DagsterEventType

    starts, times = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            times[event.step_key] = record.timestamp - starts[event.step_key]
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="warm runs per job")
    args = parse_args(parser, repeat=1)

    home = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    # Ports of its own, so a running demo's deployments are left alone.
    os.environ.setdefault("MLOPS_PRODUCTION_PORT", "18100")
    os.environ.setdefault("MLOPS_QA_PORT", "18101")
    t0 = time.perf_counter()
    import dagster as dg

    from mlops_assets import quiet_api_stage_warnings
    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.assets import landed_files
    from mlops_assets.ingest.automation import plan_landing
    from mlops_assets.ingest.seed import seed
    from mlops_assets.ops.runner import execute
    from mlops_assets.release.assets import model_versions
    from mlops_assets.settings import get_settings

    quiet_api_stage_warnings()
    settings = get_settings()
    write_instance_config(settings.dagster_home)
    defs = build_definitions(settings)
    import_s = time.perf_counter() - t0
    storage = defs.resources["storage"].get()
    seed(storage, defs.resources["project"].get())

    rows: list[tuple[str, str, float, dict[str, float]]] = []
    with dg.DagsterInstance.get() as instance:
        plan = plan_landing(storage, instance)
        instance.add_dynamic_partitions(landed_files.name, plan.new_partitions)
        partition = plan.run_requests[0].partition_key

        def timed(job: str, label: str, partition_key: str | None = None) -> None:
            start = time.perf_counter()
            result = execute(defs, instance, job, settings.lock_dir, partition_key=partition_key)
            wall = time.perf_counter() - start
            assert result.success, f"{job} failed"
            rows.append((job, label, wall, step_times(instance, result.run_id)))

        timed("ingest_job", "cold", partition)
        for _ in range(args.repeat):
            timed("ingest_job", "warm", partition)
        timed("retraining_job", "cold")
        for _ in range(args.repeat):
            timed("retraining_job", "warm")
        # Registration to production: image context, QA deploy + smoke, production deploy + smoke.
        version = "1"
        instance.add_dynamic_partitions(model_versions.name, [version])
        timed("release_job", "cold", version)  # builds the serving venv, starts production
        for _ in range(args.repeat):
            timed("release_job", "warm", version)  # venv reused, production swaps in place
        target = defs.resources["deploy_target"].target()
        for deployment in target.list():
            target.stop(deployment.name)

    print(f"imports + definitions: {import_s:.2f} s   (MLOPS_HOME={home})")
    print(f"{'job':<16}{'run':<6}{'wall s':>8}   steps (s)")
    for job, label, wall, steps in rows:
        detail = ", ".join(f"{k.split('.')[-1]} {v:.2f}" for k, v in steps.items())
        print(f"{job:<16}{label:<6}{wall:>8.2f}   {detail}")
    for job in ("ingest_job", "retraining_job", "release_job"):
        warm = [wall for j, label, wall, _ in rows if j == job and label == "warm"]
        print(f"{job} warm median: {statistics.median(warm):.2f} s over {len(warm)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
