"""Batch scoring throughput against the I/O floor, with peak memory.

Run: .venv/bin/python bench/batch.py [--rows 1000000,10000000] [--rounds 7] [--project forest]

For each size, one parquet input of the 10 diabetes features (random values, 64k-row row
groups) is written once; then, each in its own process (so peak RSS is that run's alone):
  ours   score_file: read in chunks, check every value, predict with the production-style
         StandardScaler+Ridge (affine fast path), write predictions + row ids + model version
  floor  pyarrow alone: read the same input in the same chunks and write an output of the same
         schema and row count, no checks, no scoring
and prints rows/s, ours/floor and peak RSS. Target: ours >= 0.7x floor, memory flat in rows.

``--project forest``: the random forest `mlops-assets init --task binary --library forest` makes,
on rows drawn from its sample data (every feature kind, nulls included). ours: score_file with the
release as registration writes it (its compiled graph); model: the same chunks read, each as a
pandas frame into the model's own ``predict_proba``, labels and probabilities written.
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


def score_with(model, input_path: str, output_dir: str) -> dict:
    """score_file with ``model``, timed: rows, seconds, rows refused."""
    import fsspec

    from mlops_assets.model.batch_scoring import score_file

    started = time.perf_counter()
    result = score_file(
        fsspec.filesystem("file"),
        input_path,
        f"{output_dir}/ours.parquet",
        f"{output_dir}/ours.refused.parquet",
        model,
    )
    return {"rows": result.rows, "seconds": time.perf_counter() - started, "refused": result.refused}


def run_ours(input_path: str, output_dir: str) -> dict:

    from mlops_assets.model.loaded import LoadedModel
    from mlops_assets.model.predictors import affine_predictor
    from mlops_assets_tests.projects import diabetes_frame, fit_diabetes

    predict = affine_predictor(fit_diabetes(diabetes_frame()), len(FEATURES))
    model = LoadedModel("diabetes", "1", tuple(FEATURES), "", "bench", None, predict, fast_path=True)
    return score_with(model, input_path, output_dir)


def make_project_input(path: Path, rows: int, work: Path) -> None:
    """The forest project's input (rows drawn from its typed sample data), and in ``work`` its
    release (compiled as registration compiles it) and its fitted model, for the workers."""
    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.projects import bench_projects
    from mlops_assets_tests.projects import typed_seed

    (bench,) = bench_projects(["forest"])
    block = bench.write_release(work / "release")
    assert "file" in block, block  # the graph is what ours answers with
    joblib.dump(bench.model, work / "model.joblib")
    (work / "spec.json").write_text(json.dumps(bench.project.spec.serving_dict()))
    frame = typed_seed(bench.project)[list(bench.project.spec.feature_names)]
    with pq.ParquetWriter(path, pa.Schema.from_pandas(frame, preserve_index=False)) as writer:
        for start in range(0, rows, 1_000_000):
            part = frame.sample(min(1_000_000, rows - start), replace=True, random_state=start)
            writer.write_table(pa.Table.from_pandas(part, preserve_index=False), row_group_size=65_536)


def run_release(input_path: str, output_dir: str) -> dict:

    from mlops_assets.model.loaded import load_release
    from mlops_assets.model.rows import ServingSpec

    spec = ServingSpec.from_dict(json.loads((Path(output_dir) / "spec.json").read_text()))
    model = load_release(Path(output_dir) / "release", spec)
    assert model.answered_by == "onnx graph", model.answered_by
    return score_with(model, input_path, output_dir)


def run_model(input_path: str, output_dir: str) -> dict:
    """The model's own predict_proba on the same chunks, as a user's batch job would call it."""
    import joblib
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_assets.model.batch_scoring import CHUNK_ROWS, PARQUET_READ

    model = joblib.load(Path(output_dir) / "model.joblib")
    started, rows = time.perf_counter(), 0
    writer = None
    for batch in pq.ParquetFile(input_path, **PARQUET_READ).iter_batches(batch_size=CHUNK_ROWS):
        frame = batch.to_pandas()
        probabilities = model.predict_proba(frame)
        labels = model.classes_[probabilities.argmax(axis=1)]
        columns = {"row_id": np.arange(rows, rows + len(frame), dtype=np.int64), "prediction": labels}
        columns |= {f"probability_{c}": probabilities[:, i] for i, c in enumerate(model.classes_)}
        table = pa.table(columns)
        writer = writer or pq.ParquetWriter(f"{output_dir}/model.parquet", table.schema)
        writer.write_table(table)
        rows += len(frame)
    writer.close()
    return {"rows": rows, "seconds": time.perf_counter() - started, "refused": 0}


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
    parser.add_argument("--project", choices=["diabetes", "forest"], default="diabetes")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parse_args(parser, rows="20000", rounds=1)
    if args.worker:
        way, input_path, work = args.worker
        run = {"ours": run_ours, "floor": run_floor, "release": run_release, "model": run_model}[way]
        figures = run(input_path, work)
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return 0

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-batch-"))
    # Each way's name in the worker, and the way ours is compared with.
    ways, peer = (
        (("floor", "ours"), "floor") if args.project == "diabetes" else (("model", "release"), "model")
    )
    print(f"{'rows':>11} {'way':>8} {'rows/s':>12} {'seconds':>8} {'peak RSS MB':>12} {'ours/' + peer:>11}")
    for rows in (int(r) for r in args.rows.split(",")):
        input_path = work / f"input-{rows}.parquet"
        if args.project == "diabetes":
            make_input(input_path, rows)
        else:
            make_project_input(input_path, rows, work)
        runs: dict[str, list[dict]] = {way: [] for way in ways}
        for _ in range(args.rounds):
            for way in runs:  # interleaved, so a slow moment of the machine hits both alike
                runs[way].append(measure(way, input_path, work))
        median = {
            way: sorted(found, key=lambda f: f["seconds"])[len(found) // 2] for way, found in runs.items()
        }
        for way, f in median.items():
            assert f["rows"] == rows and f["refused"] == 0
            ratio = f"{median[peer]['seconds'] / f['seconds']:.2f}x" if way != peer else ""
            name = "ours" if way == "release" else way
            print(
                f"{rows:>11,} {name:>8} {rows / f['seconds']:>12,.0f} {f['seconds']:>8.2f} "
                f"{f['peak_rss_mb']:>12.0f} {ratio:>11}",
                flush=True,
            )
        input_path.unlink()
    features = (
        "10 float64 features" if args.project == "diabetes" else f"the {args.project} project's features"
    )
    print(f"\ninput: parquet, {features}, 64k-row groups; chunks of 262,144 rows; work dir {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
