"""model_evaluation (the gate) and registered_model (the registry version + release manifest)."""

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.core import keys
from mlops_assets.core.project import ModelProjectResource
from mlops_assets.core.stage_lock import StageLock
from mlops_assets.core.storage import Storage, StorageResource, relative_path
from mlops_assets.ingest.batches import first_rows
from mlops_assets.ingest.training_data import load_snapshot
from mlops_assets.model.artifact import ArtifactError, verify_sha256
from mlops_assets.model.compiled import COMPILED_NAME
from mlops_assets.model.manifest import MANIFEST_NAME
from mlops_assets.model.smoke import SMOKE_ROWS
from mlops_assets.project.environment import LOCK_FILE, read_lock
from mlops_assets.project.fitting import as_model_input
from mlops_assets.project.loader import ModelProject
from mlops_assets.project.metrics import task_metrics
from mlops_assets.project.package import sources_digest
from mlops_assets.project.spec import ProjectError
from mlops_assets.registry.compiled import (
    COMPILED_TAG,
    compiled_tag,
    read_graph,
    verdict_words,
    version_verdict,
)
from mlops_assets.registry.evaluation import (
    Decision,
    Scored,
    already_registered,
    bar_versions,
    decide,
)
from mlops_assets.registry.index import VersionIndex
from mlops_assets.registry.manifest import build_manifest
from mlops_assets.registry.plots import holdout_plots_markdown
from mlops_assets.registry.protocol import PRODUCTION_ALIAS, RELEASE_STATE_TAG, ModelRegistry
from mlops_assets.registry.resource import RegistryResource
from mlops_assets.runner.client import Artifact, ProjectRunError, ProjectRunner
from mlops_assets.training.assets import reported_metrics
from mlops_assets.training.train import ARTIFACT_NAME, holdout_mask

RELEASE_PREFIX = "models/released"
COLUMNS_TAG = "columns_digest"


def columns_digest(project: ModelProject) -> str:
    """The task, the features in order and the target: a model trained for other ones cannot be
    compared on this holdout (its numbers would mean something else)."""
    spec = project.spec
    text = "|".join([spec.task, *spec.feature_names, "->", spec.target.name])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _artifact(data: bytes, sha256: str, source: str, project: ModelProject) -> Artifact:
    """The artifact as the runner takes it, its bytes checked against ``sha256`` here already (a
    step failure naming it); its types are checked where it loads, in the runner."""
    try:
        verify_sha256(data, sha256, source)
    except ArtifactError as exc:
        raise dg.Failure(str(exc)) from exc
    return Artifact(data, sha256, tuple(project.spec.artifact.trusted_types), source)


PLOTTED_ROWS = 5000  # the holdout rows the plots show (the metrics are of all of them)


@contextlib.contextmanager
def _holdout_file(storage: Storage, candidate: dict, project: ModelProject) -> Iterator[Path]:
    """A file of this machine with the candidate's holdout rows as stored: the one train.py wrote
    beside the artifact (the orchestrator never reads the snapshot's rows), or, for a candidate
    trained before it wrote one, drawn from the snapshot here."""
    if "holdout_uri" in candidate:
        with storage.local_file(relative_path(storage, candidate["holdout_uri"])) as local:
            yield Path(local)
        return
    frame = load_snapshot(storage, candidate["snapshot_uri"])
    spec = project.spec
    held = frame[holdout_mask(frame, list(spec.columns), spec.evaluation.holdout_percent)]
    with tempfile.TemporaryDirectory(prefix="mlops-holdout-") as folder:
        path = Path(folder) / "holdout.parquet"
        held.to_parquet(path, index=False)
        yield path


def _first_holdout_rows(storage: Storage, candidate: dict, project: ModelProject, rows: int) -> pd.DataFrame:
    """The holdout's first ``rows`` rows as the model takes them, read without the rest where
    train.py wrote the holdout."""
    if "holdout_uri" in candidate:
        frame = first_rows(storage, relative_path(storage, candidate["holdout_uri"]), rows)
    else:
        with _holdout_file(storage, candidate, project) as path:
            frame = pd.read_parquet(path).head(rows)
    return as_model_input(frame, project.spec.native_categories)


def _evaluate(
    runner: ProjectRunner,
    project: ModelProject,
    artifact: Artifact,
    holdout: Path,
    predictions: int = 0,
) -> dict:
    """The artifact's metrics on the holdout (and its predictions), computed in the project runner;
    an artifact that does not verify or project code that cannot load fails the step."""
    spec = project.spec
    try:
        return runner.evaluate(
            artifact,
            spec.task,
            list(spec.feature_names),
            spec.target.name,
            holdout,
            spec.native_categories,
            predictions,
        )
    except (ArtifactError, ProjectError) as exc:
        raise dg.Failure(str(exc)) from exc


def _score_version(
    runner: ProjectRunner, registry: ModelRegistry, version, holdout: Path, project: ModelProject
) -> Scored:
    label = f"version {version.version}"
    trained_for = version.tags.get(COLUMNS_TAG)
    if trained_for is not None and trained_for != columns_digest(project):
        return Scored(
            label, version.version, {}, "was trained for other columns or another task (spec changed)"
        )
    artifact = _artifact(
        registry.read_file(version.version, ARTIFACT_NAME), version.tags["artifact_sha256"], label, project
    )
    try:
        return Scored(label, version.version, _evaluate(runner, project, artifact, holdout)["metrics"])
    except ProjectRunError as exc:  # e.g. a feature it needs is gone; a runner that died is no answer
        if not exc.kind:
            raise dg.Failure(str(exc)) from exc
        return Scored(label, version.version, {}, f"cannot score the current holdout ({exc})")


def _compiled(
    runner: ProjectRunner, project: ModelProject, artifact: Artifact, holdout: Path
) -> tuple[bytes | None, dict]:
    """The artifact compiled and checked in the project runner, or why not: compiling speeds up
    serving, so a converter that brings the runner down is a reason, never a failed registration."""
    try:
        return runner.compile_graph(artifact, project.spec.serving_dict(), holdout)
    except ProjectRunError as exc:
        return None, {"reason": f"compiling failed in the project runner ({exc})"}


def _registered_graph(models: ModelRegistry, version, compiled: dict) -> tuple[bytes | None, dict]:
    """The graph the registry holds for ``version`` (verified against its tag) and its block: this
    run's (``compiled``, whose reason is whole) when the version is the one just made, else the
    version's own (registered earlier, perhaps before models were compiled)."""
    block = (
        compiled
        if version.tags.get(COMPILED_TAG) == compiled_tag(compiled)
        else version_verdict(version.tags)
    )
    if "sha256" not in block:
        return None, block
    block = block | {"file": COMPILED_NAME}
    try:
        return read_graph(models, version.version, block), block
    except ArtifactError as exc:
        raise dg.Failure(str(exc)) from exc


def _manifest(registry: ModelRegistry, version: int) -> dict | None:
    """A version's manifest, or None where an interrupted registration left it without one."""
    try:
        return json.loads(registry.read_file(version, MANIFEST_NAME))
    except (FileNotFoundError, KeyError, ValueError):
        return None


def _comparison_table(decision: Decision, names: list[str]) -> str:
    rows = [decision.candidate, *decision.compared]
    lines = ["| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for scored in rows:
        label = f"**{scored.label}**" if decision.bar and scored.label == decision.bar.label else scored.label
        cells = [f"{scored.metrics[m]:.4g}" if m in scored.metrics else "n/a" for m in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dg.asset(
    group_name="registry",
    kinds={"scikit-learn"},
    ins={
        "candidate_model": dg.AssetIn(key=keys.CANDIDATE_MODEL),
        "training_data": dg.AssetIn(key=keys.TRAINING_DATA),
    },
    description=(
        "The candidate against the bar (production and any version still being released; else the "
        "latest) on the same current holdout; promote only on a strict relative improvement of the "
        "project's primary metric ([evaluation] in project.toml)."
    ),
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    candidate_model: dict,
    training_data: dict,
    registry: RegistryResource,
    project: ModelProjectResource,
    storage: StorageResource,
    stage_lock: StageLock,  # held for the whole run: one run of this stage at a time
) -> dg.Output[dict]:
    store, models, model_project = storage.get(), registry.get_registry(), project.get()
    runner = project.runner()
    spec = model_project.spec
    artifact = _artifact(
        store.read_bytes(relative_path(store, candidate_model["artifact_uri"])),
        candidate_model["artifact_sha256"],
        candidate_model["artifact_uri"],
        model_project,
    )
    with _holdout_file(store, candidate_model, model_project) as holdout:
        try:
            evaluated = _evaluate(runner, model_project, artifact, holdout, predictions=PLOTTED_ROWS)
        except ProjectRunError as exc:
            raise dg.Failure(f"the candidate cannot score the holdout: {exc}") from exc
        candidate = Scored("candidate", None, evaluated["metrics"])

        primary = spec.evaluation.primary_metric
        same = models.find_by_fingerprint(candidate_model["fingerprint"])
        if same is not None:
            decision = already_registered(candidate, same)
            scored = [Scored(f"version {same.version}", same.version, candidate.metrics)]
        else:
            bar = bar_versions(models.list_versions(), models.get_alias(PRODUCTION_ALIAS))
            scored = [
                _score_version(
                    project.version_runner(_manifest(models, v.version)), models, v, holdout, model_project
                )
                for v in bar
            ]
            decision = decide(
                candidate, scored, task_metrics(spec.task)[primary], spec.evaluation.min_improvement
            )
    context.log.info(decision.reason)
    VersionIndex(store, models.model_name).record_evaluation(
        candidate_model["holdout_hash"],
        primary,
        {s.version: s.metrics[primary] for s in scored if s.version is not None and primary in s.metrics},
    )

    predicted = np.asarray(evaluated["predictions"])
    metadata = {
        "promote": decision.promote,
        "reason": decision.reason,
        "primary_metric": spec.evaluation.primary_metric,
        "holdout_rows": evaluated["rows"],
        "comparison": dg.MetadataValue.md(_comparison_table(decision, list(candidate.metrics))),
        "plots": dg.MetadataValue.md(
            holdout_plots_markdown(
                spec.task,
                np.asarray(evaluated["actual"]),
                predicted,
                "candidate on the holdout",
                spec.target.kind,
            )
        ),
    }
    if decision.bar is not None:
        metadata["bar"] = decision.bar.label
    return dg.Output(decision.to_dict(), metadata=metadata)


def _registration_tags(
    context: dg.AssetExecutionContext, candidate: dict, project: ModelProject, champion: str, bar: str
) -> dict[str, str]:
    keys = (
        "data_version",
        "snapshot_uri",
        "holdout_hash",
        "code_version",
        "model_code_digest",
        "spec_digest",
        "model_kind",
        "compute_backend",
        "artifact_sha256",
        "fingerprint",
    )
    tags = {key: str(candidate[key]) for key in keys}
    tags |= {name: str(value) for name, value in reported_metrics(candidate).items()}
    tags |= {
        "project": project.name,
        "spec_version": project.spec.version,
        "task": project.spec.task,
        "primary_metric": project.spec.evaluation.primary_metric,
        COLUMNS_TAG: columns_digest(project),
        "params": json.dumps(project.spec.params, sort_keys=True),
        "dagster_run_id": context.run_id,
        "parent_champion_version": champion,
        "bar_version": bar,
        RELEASE_STATE_TAG: "registered",
    }
    if project.spec.environment.requirements:  # checked current when the project loaded
        lock = read_lock(project.folder / LOCK_FILE)
        tags["environment_lock"] = lock.digest
        tags["environment_pins"] = lock.pinned
    return tags


@dg.asset(
    group_name="registry",
    kinds={"mlflow"},
    ins={"candidate_model": dg.AssetIn(key=keys.CANDIDATE_MODEL)},
    output_required=False,
    description=(
        "The promoted candidate as a registry version with its lineage tags and release manifest. "
        "Not promoted: a clean skip (the run succeeds) with the reason recorded."
    ),
)
def registered_model(
    context: dg.AssetExecutionContext,
    model_evaluation: dict,
    candidate_model: dict,
    registry: RegistryResource,
    project: ModelProjectResource,
    storage: StorageResource,
    stage_lock: StageLock,  # held for the whole run: one run of this stage at a time
):
    if not model_evaluation["promote"]:
        context.log.info(f"skipped: {model_evaluation['reason']}")
        yield dg.AssetObservation(
            asset_key=context.asset_key,
            metadata={"decision": "skipped", "reason": model_evaluation["reason"]},
        )
        return
    store, models, model_project = storage.get(), registry.get_registry(), project.get()
    sources = model_project.sources()
    if sources_digest(sources) != candidate_model["model_code_digest"]:
        raise dg.Failure(
            f"{model_project.folder}: the project's code changed since the candidate was trained (code "
            f"{sources_digest(sources)}, trained with {candidate_model['model_code_digest']}): train it again"
        )
    candidate = _artifact(
        store.read_bytes(relative_path(store, candidate_model["artifact_uri"])),
        candidate_model["artifact_sha256"],
        candidate_model["artifact_uri"],
        model_project,
    )
    runner = project.runner()
    with _holdout_file(store, candidate_model, model_project) as holdout:
        graph, compiled = _compiled(runner, model_project, candidate, holdout)
    context.log.info(f"{candidate_model['artifact_uri']}: {verdict_words(compiled)}")
    champion = models.get_alias(PRODUCTION_ALIAS)
    bar = model_evaluation.get("bar") or {}
    tags = _registration_tags(
        context,
        candidate_model,
        model_project,
        champion=str(champion.version) if champion else "",
        bar=str(bar.get("version") or ""),
    )
    tags[COMPILED_TAG] = compiled_tag(compiled)
    version = models.register(
        candidate.data,
        ARTIFACT_NAME,
        tags,
        reported_metrics(candidate_model),
        {COMPILED_NAME: graph} if graph is not None else None,
    )
    graph, compiled = _registered_graph(models, version, compiled)
    # Release what the registry holds: if this fingerprint was registered before, that is its artifact.
    sha256 = version.tags["artifact_sha256"]
    registered = _artifact(
        models.read_file(version.version, ARTIFACT_NAME), sha256, f"version {version.version}", model_project
    )
    first_rows = _first_holdout_rows(store, candidate_model, model_project, SMOKE_ROWS)
    try:
        smoke = runner.smoke(registered, list(model_project.spec.feature_names), first_rows)
    except (ArtifactError, ProjectError, ProjectRunError) as exc:
        raise dg.Failure(str(exc)) from exc
    manifest = build_manifest(
        models.model_name,
        version.version,
        ARTIFACT_NAME,
        sha256,
        model_project,
        candidate_model,
        smoke=smoke,
        sources=sources,
        compiled=compiled,
    )
    # Written every time, so a registration interrupted before its manifest is repaired by a rerun.
    models.write_manifest(version.version, manifest)
    release_dir = f"{RELEASE_PREFIX}/{models.model_name}/{version.version}"
    store.write_bytes(f"{release_dir}/{ARTIFACT_NAME}", registered.data)
    if graph is not None:
        store.write_bytes(f"{release_dir}/{COMPILED_NAME}", graph)
    manifest_uri = store.write_json(f"{release_dir}/{MANIFEST_NAME}", manifest)
    context.log.info(f"registered {models.model_name} version {version.version}")
    yield dg.Output(
        {
            "model_name": models.model_name,
            "version": version.version,
            "manifest": manifest,
            "release_dir": release_dir,
        },
        metadata={
            "model_name": models.model_name,
            "version": version.version,
            "registry": registry.backend_name,
            "fingerprint": candidate_model["fingerprint"],
            **reported_metrics(candidate_model),
            "manifest": dg.MetadataValue.path(manifest_uri),
            "reason": model_evaluation["reason"],
            "compiled": verdict_words(compiled),
        },
        data_version=dg.DataVersion(str(version.version)),
    )
