"""A retrain over many big batches: the code location's memory against the number of rows.

For each count N: a fresh home, N files of ``--rows`` rows each of the default project's columns
(the seed's rows drawn with replacement, a seed per file), ingested by one process; then, in a
fresh process that holds nothing else, one retraining_job (training_data, train.py as a
subprocess, evaluation, registration) with each step's seconds, the process's RSS before the run
and its peak. train.py and the project runner read the rows in processes of their own: what this
measures is what the orchestrator holds.

Run: .venv/bin/python bench/retrain_scale.py [--batches 1 10] [--rows 1000000]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _use_home(home: Path) -> None:
    os.environ.update(MLOPS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))


def ingest(home: Path, batches: int, rows: int) -> dict:
    _use_home(home)
    import dagster as dg

    from bench.ingest_scale import seeded_home, write_csv
    from mlops_assets.ops.runner import ingest_new_files

    settings, defs, storage, project = seeded_home()
    storage.remove("landing/" + next(f.name for f in storage.list_files("landing")))  # only the big files
    sample = project.seed_frame()
    for number in range(batches):
        csv = home / f"part-{number:02d}.csv"
        write_csv(csv, rows, sample, seed=number)
        storage.put_file(str(csv), f"landing/{csv.name}")
        csv.unlink()
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        outcomes = ingest_new_files(defs, instance, storage, settings.lock_dir)
    return {"ingested": sum(o.success for o in outcomes), "ingest_s": time.perf_counter() - started}


def retrain(home: Path) -> dict:
    _use_home(home)
    import dagster as dg

    from bench.ingest_scale import measured
    from mlops_assets import quiet_api_stage_warnings
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ops.runner import retrain as run_retrain
    from mlops_assets.settings import get_settings

    quiet_api_stage_warnings()
    settings = get_settings()
    defs = build_definitions(settings)
    with dg.DagsterInstance.get() as instance:
        outcome, figures = measured(instance, lambda: run_retrain(defs, instance, settings.lock_dir))
    rows = (outcome.training_data or {}).get("rows", 0)
    return {"success": outcome.success, "errors": outcome.errors, "rows": rows, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ingest", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--retrain", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest:
        print(json.dumps(ingest(Path(args.ingest[0]), int(args.ingest[1]), int(args.ingest[2]))))
        return
    if args.retrain:
        print(json.dumps(retrain(Path(args.retrain))))
        return
    print(
        f"{'batches':>7} {'rows':>10} {'ingest s':>9} {'retrain s':>10} {'RSS before MB':>14} "
        f"{'peak RSS MB':>12}  steps (s)"
    )
    for batches in args.batches:
        home = Path(tempfile.mkdtemp(prefix="mlops-retrain-bench-"))
        landed = json.loads(_child("--ingest", str(home), str(batches), str(args.rows)))
        found = json.loads(_child("--retrain", str(home)))
        shutil.rmtree(home, ignore_errors=True)
        steps = ", ".join(f"{k.split('.')[-1]} {v:.1f}" for k, v in found["steps"].items())
        print(
            f"{batches:>7} {found['rows']:>10} {landed['ingest_s']:>9.1f} {found['run_s']:>10.1f} "
            f"{found['before_rss_mb']:>14.0f} {found['peak_rss_mb']:>12.0f}  {steps}"
            + ("" if found["success"] else f"  (FAILED: {found['errors']})")
        )


def _child(*args: str) -> str:
    from bench.ingest_scale import child

    return child(__file__, *args)


if __name__ == "__main__":
    main()
