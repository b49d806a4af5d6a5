"""An ingest_job run on a big file against the limit of the same work, in one run per size.

For each size: a CSV of that many rows of the default project's columns (the seed's rows drawn
with replacement, so every value passes), written a million rows at a time; the limit, in a process
of its own, is pyarrow doing the same work two ways (see ``limit_seconds``): ``typed`` (pyarrow's own
number parsing, nulls and ranges, a parquet write) and ``same`` (the checks ingest makes, on the
cells as text, in pyarrow compute); then, in a fresh process and home that holds nothing else, one ingest_job run on a
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


def limit_seconds(path: Path, spec, out: Path) -> dict[str, float]:
    """pyarrow alone, two ways. ``typed``: read with its own number parsing, each spec column's
    nulls and range checked, parquet written (what a reader that never reports a bad cell's text
    does). ``same``: the checks ingest makes, in pyarrow compute: every cell read as text, trimmed
    and lower-cased, null tokens and the number pattern matched, numbers cast, nulls, ranges,
    moments and a sample per number column, category counts, parquet written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    from mlops_assets.project.rules import NULL_TOKENS, NUMBER_TEXT
    from mlops_assets.project.spec import NUMBER_KINDS

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
    typed = time.perf_counter() - started

    started = time.perf_counter()
    names = list(spec.columns)
    text = pv.read_csv(
        path, convert_options=pv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    )
    nulls, pattern, columns = pa.array(sorted(NULL_TOKENS)), f"^(?:{NUMBER_TEXT})$", {}
    for name, column in spec.columns.items():
        cells = pc.utf8_lower(pc.utf8_trim_whitespace(table_column(text, name)))
        is_null = pc.is_in(cells, value_set=nulls)
        if column.kind not in NUMBER_KINDS:
            assert pc.sum(is_null).as_py() == 0
            pc.value_counts(cells)
            columns[name] = cells
            continue
        readable = pc.match_substring_regex(cells, pattern)
        assert pc.all(pc.or_(readable, is_null)).as_py()
        numbers = pc.cast(pc.if_else(readable, cells, None), pa.float64())
        bounds = pc.min_max(numbers)
        if column.min is not None:
            assert bounds["min"].as_py() >= column.min
        if column.max is not None:
            assert bounds["max"].as_py() <= column.max
        pc.mean(numbers), pc.stddev(numbers, ddof=1)
        np.random.default_rng(0).choice(numbers.to_numpy(zero_copy_only=False), 50_000)
        columns[name] = numbers
    pq.write_table(pa.table(columns), out)
    return {"typed": typed, "same": time.perf_counter() - started}


def table_column(table, name: str):
    return table.column(name).combine_chunks()


def write_csv(path: Path, rows: int, sample, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    for start in range(0, rows, 1_000_000):
        part = sample.iloc[rng.integers(0, len(sample), min(1_000_000, rows - start))]
        part.to_csv(path, index=False, mode="w" if start == 0 else "a", header=start == 0)


def one(csv: Path) -> dict:
    home = Path(tempfile.mkdtemp(prefix="mlops-ingest-bench-"))
    os.environ.update(MLOPS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    import dagster as dg

    from mlops_assets.ingest.assets import landed_files
    from mlops_assets.ops.runner import execute

    settings, defs, storage, _ = seeded_home()  # the reference the distribution checks compare with
    storage.put_file(str(csv), "landing/big.csv")
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(landed_files.name, ["big.csv"])
        result, figures = measured(
            instance,
            lambda: execute(defs, instance, "ingest_job", settings.lock_dir, partition_key="big.csv"),
        )
    return {"mb": csv.stat().st_size / 1e6, "success": result.success, **figures}


def seeded_home() -> tuple:
    """The settings, definitions, storage and project of the home MLOPS_HOME names, its instance
    configured and the project's seed landed (with its reference statistics)."""
    from mlops_assets import quiet_api_stage_warnings
    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.seed import seed
    from mlops_assets.settings import get_settings

    quiet_api_stage_warnings()
    settings = get_settings()
    write_instance_config(settings.dagster_home)
    defs = build_definitions(settings)
    storage, project = defs.resources["storage"].get(), defs.resources["project"].get()
    seed(storage, project)
    return settings, defs, storage, project


def measured(instance, run) -> tuple:
    """``run()``, a Dagster run: its result, and its seconds, each step's, and this process's RSS
    before it and at its peak."""
    from bench.pipeline import step_times

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    result = run()
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    figures = {
        "run_s": wall,
        "steps": step_times(instance, result.run_id),
        "before_rss_mb": before / 1e6,
        "peak_rss_mb": peak / 1e6,
    }
    return result, figures


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
        f"{'rows':>9} {'MB':>6} {'typed s':>8} {'same s':>7} {'run s':>7} {'typed/run':>9} {'same/run':>8} "
        f"{'RSS before MB':>14} {'peak RSS MB':>12}  steps (s)"
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
            f"{rows:>9} {found['mb']:>6.0f} {limit['typed']:>8.2f} {limit['same']:>7.2f} {found['run_s']:>7.1f} "
            f"{limit['typed'] / found['run_s']:>9.3f} {limit['same'] / found['run_s']:>8.3f} "
            f"{found['before_rss_mb']:>14.0f} {found['peak_rss_mb']:>12.0f}  "
            f"{steps}" + ("" if found["success"] else "  (FAILED)")
        )


def _child(*args: str) -> str:
    return child(__file__, *args)


def child(script: str, *args: str) -> str:
    """The last line ``script`` prints, run with ``args`` in a process of its own."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return done.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    main()
