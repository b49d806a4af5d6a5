"""Which predictor answers a request fastest: each one proven equal to the model, side by side.

Run: .venv/bin/python bench/predictors.py [--rounds 3]

For each model (diabetes' Ridge pipeline, churn's logistic regression behind one-hot, impute and
scale, and the random forests ``init --library forest`` makes, 100 trees), a parsed request of 1
and of 100 rows checked (``rows_from_payload``) and scored (``score_rows``) as the service does
it, with each predictor the model has: the model itself (scikit-learn), its compiled ONNX graph
(onnxruntime, one thread), and the affine map where the model is one. Microseconds per request,
the best of ``--rounds`` (in-process: no server, no socket, no JSON). A reading stays in
``loaded.py`` only where it beats the graph here.
"""

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def best_microseconds(call, calls: int, rounds: int) -> float:
    call()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def models():
    """(name, fitted model, its project's serving spec, the rows it was fitted on)."""
    import tempfile

    from mlops_assets.model.rows import ServingSpec
    from mlops_assets.ops.scaffold import scaffold
    from mlops_assets.project.fitting import fit
    from mlops_assets.project.loader import load_project

    with tempfile.TemporaryDirectory() as scratch:
        for task in ("binary", "regression"):
            scaffold(Path(scratch) / task, task, library="forest")
        for name, folder in (
            ("diabetes", REPO / "models" / "diabetes"),
            ("churn", REPO / "models" / "churn"),
            ("init --library forest (binary, 100 trees)", Path(scratch) / "binary"),
            ("init --library forest (regression, 100 trees)", Path(scratch) / "regression"),
        ):
            project = load_project(folder)
            spec = ServingSpec.from_dict(project.spec.serving_dict())
            frame = project.seed_frame()
            features = list(project.spec.feature_names)
            model = fit(project.folder, frame, features, project.spec.target.name, project.spec.params)
            yield name, model, spec, frame


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import json

    import skops.io as sio

    from mlops_assets.model.artifact import sha256_hex
    from mlops_assets.model.compiling import compile_model
    from mlops_assets.model.loaded import loaded_model, score_rows
    from mlops_assets.model.rows import probe_rows, rows_from_payload

    print("| model | rows | the model | onnx graph | reading | graph fed as |")
    print("|---|---|---|---|---|---|")
    for name, model, spec, frame in models():
        graph, block = compile_model(model, spec, frame)
        data = sio.dumps(model)
        manifest = {
            "model_name": name,
            "version": 1,
            "artifact": "model.skops",
            "sha256": sha256_hex(data),
            "features": list(spec.names),
            "compiled": block,
        }
        spec = dataclasses.replace(spec, trusted_types=tuple(sio.get_untrusted_types(data=data)))
        fastest = loaded_model(manifest, data, name, spec, graph)
        plain = dataclasses.replace(fastest, fast_path=False, compiled=None, predict=model.predict)
        on_graph = fastest.compiled and dataclasses.replace(
            fastest, fast_path=False, predict=fastest.compiled.predict
        )
        for count in (1, 100):
            payload = {"data": probe_rows(spec, count)}
            text = json.dumps(payload).encode()
            calls = 2000 if count == 1 else 300
            cells = [
                best_microseconds(
                    lambda m=m, p=payload, t=text, n=count, s=spec: score_rows(
                        m, rows_from_payload(p, s, n, t)
                    ),
                    calls,
                    args.rounds,
                )
                if m
                else None
                for m in (
                    plain,
                    on_graph,
                    fastest if fastest.answered_by == "affine map" else None,
                )
            ]
            shown = [f"{c:.1f} µs" if c is not None else "—" for c in cells]
            reading = f"{shown[2]} ({fastest.answered_by})" if cells[2] is not None else "—"
            fed = f"{block['inputs']} of {block['numbers']}" if graph else block["reason"][:60]
            print(f"| {name} | {count} | {shown[0]} | {shown[1]} | {reading} | {fed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
