"""Batch scoring throughput against the I/O floor, with peak memory.

Run: .venv/bin/python bench/batch.py [--rows 1000000,10000000] [--rounds 7]

For each size, one parquet input of the 10 diabetes features (random values, 64k-row row
groups) is written once; then, each in its own process (so peak RSS is that run's alone):
  ours   score_file: read in chunks, check every value, predict with the production-style
         StandardScaler+Ridge (affine fast path), write predictions + row ids + model version
  floor  pyarrow alone: read the same input in the same chunks and write an output of the same
         schema and row count, no checks, no scoring
and prints rows/s, ours/floor and peak RSS. Target: ours >= 0.7x floor, memory flat in rows.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quick import parse_args  # noqa: E402
from mlops_assets_tests.projects import FEATURES  # noqa: E402


def make_input(path: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    schema = pa.schema([(f, pa.float64()) for f in FEATURES])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            writer.write_table(
                pa.table({f: rng.normal(size=n) for f in FEATURES}, schema=schema), row_group_size=65_536
            )


def run_ours(input_path: str, output_dir: str) -> dict:
    import fsspec

    from mlops_assets.model.batch_scoring import score_file
    from mlops_assets.model.loaded import LoadedModel
    from mlops_assets.model.predictors import affine_predictor
    from mlops_assets_tests.projects import diabetes_frame, fit_diabetes

    predict = affine_predictor(fit_diabetes(diabetes_frame()), len(FEATURES))
    model = LoadedModel("diabetes", "1", tuple(FEATURES), "", "bench", None, predict, fast_path=True)
    started = time.perf_counter()
    result = score_file(
        fsspec.filesystem("file"),
        input_path,
        f"{output_dir}/ours.parquet",
        f"{output_dir}/ours.refused.parquet",
        model,
    )
    return {"rows": result.rows, "seconds": time.perf_counter() - started, "refused": result.refused}


def run_floor(input_path: str, output_dir: str) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_assets.model.batch_scoring import CHUNK_ROWS, PARQUET_READ

    OUTPUT_SCHEMA = pa.schema(
        [
            ("row_id", pa.int64()),
            ("prediction", pa.float64()),
            ("model_version", pa.dictionary(pa.int8(), pa.string())),
        ]
    )

    started, rows = time.perf_counter(), 0
    version = pa.array(["1"])
    with pq.ParquetWriter(f"{output_dir}/floor.parquet", OUTPUT_SCHEMA) as writer:
        # The same reader settings as ours (bounded memory), so only checks and scoring differ.
        for batch in pq.ParquetFile(input_path, **PARQUET_READ).iter_batches(batch_size=CHUNK_ROWS):
            n = batch.num_rows
            writer.write_batch(
                pa.record_batch(
                    [
                        pa.array(np.arange(rows, rows + n, dtype=np.int64)),
                        batch.column(0),  # a float column of the same length, not computed
                        pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), version),
                    ],
                    schema=OUTPUT_SCHEMA,
                )
            )
            rows += n
    return {"rows": rows, "seconds": time.perf_counter() - started, "refused": 0}


def measure(way: str, input_path: Path, work: Path) -> dict:
    """One run in a fresh process: its own peak RSS, nothing cached in this one."""
    out = subprocess.run(
        [sys.executable, __file__, "--worker", way, str(input_path), str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--rounds", type=int, default=7, help="runs of each; the median is reported")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parse_args(parser, rows="20000", rounds=1)
    if args.worker:
        way, input_path, work = args.worker
        figures = (run_ours if way == "ours" else run_floor)(input_path, work)
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return 0

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-batch-"))
    print(f"{'rows':>11} {'way':>6} {'rows/s':>12} {'seconds':>8} {'peak RSS MB':>12} {'ours/floor':>11}")
    for rows in (int(r) for r in args.rows.split(",")):
        input_path = work / f"input-{rows}.parquet"
        make_input(input_path, rows)
        runs: dict[str, list[dict]] = {"floor": [], "ours": []}
        for _ in range(args.rounds):
            for way in runs:  # interleaved, so a slow moment of the machine hits both alike
                runs[way].append(measure(way, input_path, work))
        median = {
            way: sorted(found, key=lambda f: f["seconds"])[len(found) // 2] for way, found in runs.items()
        }
        for way, f in median.items():
            assert f["rows"] == rows and f["refused"] == 0
            ratio = f"{median['floor']['seconds'] / f['seconds']:.2f}x" if way == "ours" else ""
            print(
                f"{rows:>11,} {way:>6} {rows / f['seconds']:>12,.0f} {f['seconds']:>8.2f} "
                f"{f['peak_rss_mb']:>12.0f} {ratio:>11}",
                flush=True,
            )
        input_path.unlink()
    print(f"\ninput: parquet, 10 float64 features, 64k-row groups; chunks of 262,144 rows; work dir {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
