"""One model project's whole life, in-process on a real Dagster instance and real local targets:
seed -> ingest (a bad file blocked) -> retrain -> gate -> register -> build context -> QA ->
production -> scoring by position and by name -> scoring logs -> drift -> feedback (labels joined,
production's metrics) -> batch scoring.

Written once for any project: what it sends and breaks is derived from the project's spec and its
seed data, so the shipped projects and a project made by `mlops-assets init` go through the same
steps and the same assertions.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

import httpx
import pandas as pd

from mlops_assets.project.loader import ModelProject
from mlops_assets.project.metrics import task_metrics


def breaking_value(project: ModelProject) -> tuple[str, object]:
    """A feature whose spec refuses a value, and that value."""
    for name, column in project.spec.features.items():
        if column.out_of_range == "reject" and column.kind == "categorical":
            return name, "no-such-category"
    for name, column in project.spec.features.items():
        if column.out_of_range == "reject" and column.max is not None:
            return name, column.max + 1
    raise AssertionError(f"{project.name}: no feature refuses anything; nothing to break")


def run_lifecycle(defs, settings, instance, storage) -> dict:
    from mlops_assets.ingest.feedback_batch import feedback_files
    from mlops_assets.ingest.seed import seed, seed_parts
    from mlops_assets.ops.demo import client_rows
    from mlops_assets.ops.runner import (
        execute,
        failure_messages,
        ingest_new_files,
        monitor,
        release,
        retrain,
        score_new_files,
    )
    from mlops_assets.serving.keys import read_keys

    project: ModelProject = defs.resources["project"].get()
    spec = project.spec
    features = list(spec.feature_names)
    seed(storage, project)
    _, held_back = seed_parts(project)
    feature, bad_value = breaking_value(project)
    bad = held_back.astype(object)
    bad.loc[bad.index[4], feature] = bad_value
    storage.write_bytes("landing/bad-file.csv", bad.to_csv(index=False).encode())

    outcomes = {o.partition: o for o in ingest_new_files(defs, instance, storage, settings.lock_dir)}
    first_file = outcomes[f"{project.name}-part-1.csv"]
    assert first_file.success
    # The reference statistics are the first file's own, typed as ingest types it: no drift against itself.
    assert not [w for w in first_file.warnings if "drift" in w], first_file.warnings
    blocked = outcomes["bad-file.csv"]
    assert not blocked.success
    problems = blocked.failed_checks + blocked.errors
    assert any(f"landing/bad-file.csv: column {feature}" in p for p in problems), problems

    first = retrain(defs, instance, settings.lock_dir)
    assert first.success and first.registered["version"] == 1, first.errors
    assert first.training_data["batches"] == [f"{project.name}-part-1.csv"]  # the bad file never feeds it
    assert first.candidate["metric_names"] == ",".join(task_metrics(spec.task))
    registry = defs.resources["registry"].get_registry()
    version = registry.get_version(1)
    assert (version.tags["project"], version.tags["task"]) == (project.name, spec.task)
    manifest = json.loads(registry.read_file(1, "manifest.json"))
    assert manifest["features"] == features and manifest["project"]["spec_digest"] == project.spec_digest
    again = retrain(defs, instance, settings.lock_dir)
    assert again.success and not again.registered and "identical to version 1" in again.evaluation["reason"]

    # The spec travels with the code into the build context; QA is smoke-tested on the manifest's rows.
    released = release(defs, instance, settings.lock_dir, 1)
    assert released.success, released.errors
    url = released.production["url"]
    key = {"Authorization": f"Bearer {read_keys(settings.keys_file)[0]}"}
    by_name_rows = client_rows(project, held_back.head(6))
    by_name = httpx.post(f"{url}/score", json={"data": by_name_rows}, headers=key)
    assert by_name.status_code == 200, by_name.text
    by_position = [[row[f] for f in features] for row in by_name_rows]
    assert httpx.post(f"{url}/score", json={"data": by_position}, headers=key).json() == by_name.json()
    answer = by_name.json()
    assert len(answer["result"]) == 6
    if spec.task != "regression":
        assert len(answer["probabilities"]) == 6 and all(
            abs(sum(p.values()) - 1) < 1e-9 for p in answer["probabilities"]
        )
    answered_by = served_by(url)
    wrong = httpx.post(f"{url}/score", json={"data": [{**by_name_rows[0], feature: bad_value}]}, headers=key)
    assert wrong.status_code == 422 and f"row 0, feature {feature}: " in wrong.json()["error"], wrong.text

    # The day's log compacts into the spec's columns; drift is judged per feature kind.
    day = datetime.now(UTC).date().isoformat()
    everything = client_rows(project, held_back)
    for start in range(0, len(everything), 20):
        assert (
            httpx.post(f"{url}/score", json={"data": everything[start : start + 20]}, headers=key).status_code
            == 200
        )
    requests = 2 + math.ceil(len(everything) / 20)

    def logged() -> int:  # ours: the smoke tests' records are synthetic
        files = storage.list_files(f"scoring-logs/date={day}", versions=False)
        return sum(storage.read_bytes(f.path).count(b'"synthetic":false') for f in files)

    deadline = time.monotonic() + 20
    while logged() < requests:
        assert time.monotonic() < deadline, "the production's log never reached storage"
        time.sleep(0.2)
    monitored = monitor(defs, instance, settings.lock_dir, day)
    assert monitored.success, monitored.errors
    assert monitored.logs["rows"] == 12 + len(everything)
    table = monitored.drift["table"]
    assert all(f"| {name} " in table for name in features)
    kinds = {c.kind for c in spec.features.values()}
    assert ("chi2" in table) == ("categorical" in kinds) and "ks" in table

    # Labels for the first request come back: joined with its logged rows, they feed training and
    # say how production did (the task's label metrics, in the metadata the UI plots over time).
    target = spec.target.name
    truth = held_back[target].head(6).tolist()
    labels = "\n".join(
        [
            f"request_id,row_index,{target}",
            *(f"{by_name.headers['x-request-id']},{i},{v}" for i, v in enumerate(truth)),
        ]
    )
    storage.write_bytes("labels/first.csv", labels.encode())
    instance.add_dynamic_partitions(feedback_files.name, ["first.csv"])
    labelled = execute(defs, instance, "feedback_job", settings.lock_dir, partition_key="first.csv")
    assert labelled.success, failure_messages(labelled)
    metadata = {
        k: v.value for k, v in labelled.asset_materializations_for_node("feedback_batch")[0].metadata.items()
    }
    assert metadata["matched"] == 6
    if spec.task == "regression":
        expected = sum(abs(p - t) for p, t in zip(answer["result"], truth, strict=True)) / 6
        assert abs(metadata["production_mae"] - expected) < 1e-6
    else:
        expected = (
            sum(str(p).lower() == str(t).lower() for p, t in zip(answer["result"], truth, strict=True)) / 6
        )
        assert abs(metadata["production_accuracy"] - expected) < 1e-6, (metadata, answer["result"], truth)

    # Batch scoring reads each column by the spec, and a classifier's output has its probabilities.
    storage.write_bytes("scoring-input/batch.csv", held_back[features].to_csv(index=False).encode())
    ((name, batch),) = score_new_files(defs, instance, storage, settings.lock_dir)
    assert name == "batch.csv" and batch.success
    output = pd.read_parquet(storage.uri("scoring-output/batch.parquet"))
    assert len(output) == len(held_back)
    probabilities = [c for c in output.columns if c.startswith("probability_")]
    if spec.task == "regression":
        assert not probabilities
    else:
        assert probabilities and ((output[probabilities].sum(axis=1) - 1).abs() < 1e-9).all()
    return {
        "project": project,
        "candidate": first.candidate,
        "released": released,
        "answer": answer,
        "output": output,
        "manifest": manifest,
        "answered_by": answered_by,
    }


def served_by(url: str) -> str:
    """What answers for the model the service at ``url`` serves (its /metrics say)."""
    text = httpx.get(f"{url}/metrics").text
    (line,) = [x for x in text.splitlines() if x.startswith("scoring_model_info{") and x.endswith(" 1.0")]
    return line.split('answered_by="')[1].split('"')[0]
