"""An ingest_job run on a big file against the limit of the same work, in one run per size.

For each size: a CSV of that many rows of the default project's columns (the seed's rows drawn
with replacement, so every value passes), written a million rows at a time; the limit, in a process
of its own, is pyarrow reading it, the range and null checks over its columns (pyarrow compute) and
a parquet write; then, in a fresh process and home that holds nothing else, one ingest_job run on a
real Dagster instance with each step's seconds, the process's RSS before the run (imports, the
seed) and its peak.

Run: .venv/bin/python bench/ingest_scale.py [--rows 1000000 10000000]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def limit_seconds(path: Path, spec, out: Path) -> float:
    """pyarrow: read, check every spec column's nulls and range, write parquet."""
    import pyarrow.compute as pc
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    started = time.perf_counter()
    table = pv.read_csv(path)
    for name, column in spec.columns.items():
        values = table.column(name)
        assert values.null_count == 0
        if column.min is not None:
            assert pc.min_max(values)["min"].as_py() >= column.min
        if column.max is not None:
            assert pc.min_max(values)["max"].as_py() <= column.max
    pq.write_table(table, out)
    return time.perf_counter() - started


def write_csv(path: Path, rows: int, sample) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for start in range(0, rows, 1_000_000):
        part = sample.iloc[rng.integers(0, len(sample), min(1_000_000, rows - start))]
        part.to_csv(path, index=False, mode="w" if start == 0 else "a", header=start == 0)


def one(csv: Path) -> dict:
    home = Path(tempfile.mkdtemp(prefix="mlops-ingest-bench-"))
    os.environ.update(MLOPS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    import dagster as dg

    from bench.pipeline import step_times
    from mlops_assets import quiet_api_stage_warnings
    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.assets import landed_files
    from mlops_assets.ingest.seed import seed
    from mlops_assets.ops.runner import execute
    from mlops_assets.settings import get_settings

    quiet_api_stage_warnings()
    settings = get_settings()
    write_instance_config(settings.dagster_home)
    defs = build_definitions(settings)
    storage = defs.resources["storage"].get()
    project = defs.resources["project"].get()
    seed(storage, project)  # the reference statistics the distribution checks compare with
    storage.put_file(str(csv), "landing/big.csv")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(landed_files.name, ["big.csv"])
        started = time.perf_counter()
        result = execute(defs, instance, "ingest_job", settings.lock_dir, partition_key="big.csv")
        wall = time.perf_counter() - started
        steps = step_times(instance, result.run_id)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "mb": csv.stat().st_size / 1e6,
        "success": result.success,
        "run_s": wall,
        "steps": steps,
        "before_rss_mb": before / 1e6,
        "peak_rss_mb": peak / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--limit", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(Path(args.one))))
        return
    if args.limit:
        from mlops_assets.project.loader import load_project
        from mlops_assets.settings import get_settings

        spec = load_project(get_settings().project_dir).spec
        print(json.dumps(limit_seconds(Path(args.limit), spec, Path(args.limit).with_suffix(".parquet"))))
        return
    from mlops_assets.project.loader import load_project
    from mlops_assets.settings import get_settings

    sample = load_project(get_settings().project_dir).seed_frame()
    print(
        f"{'rows':>9} {'MB':>6} {'limit s':>8} {'run s':>7} {'limit/run':>9} {'RSS before MB':>14} "
        f"{'peak RSS MB':>12}  steps (s)"
    )
    for rows in args.rows:
        folder = Path(tempfile.mkdtemp(prefix="mlops-ingest-bench-csv-"))
        csv = folder / "big.csv"
        write_csv(csv, rows, sample)
        limit = json.loads(_child("--limit", str(csv)))
        found = json.loads(_child("--one", str(csv)))
        shutil.rmtree(folder)
        steps = ", ".join(
            f"{k.split('.')[-1].removeprefix('landed_batch_')} {v:.1f}" for k, v in found["steps"].items()
        )
        print(
            f"{rows:>9} {found['mb']:>6.0f} {limit:>8.2f} {found['run_s']:>7.1f} "
            f"{limit / found['run_s']:>9.3f} {found['before_rss_mb']:>14.0f} {found['peak_rss_mb']:>12.0f}  "
            f"{steps}" + ("" if found["success"] else "  (FAILED)")
        )


def _child(*args: str) -> str:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    main()
