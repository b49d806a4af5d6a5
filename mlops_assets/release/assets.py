"""Release assets, one partition per registered version: scoring image, QA, production (the rollout
itself, deploy -> smoke -> restore, is release/rollout.py)."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.core import keys
from mlops_assets.core.alerts import AlertWebhook
from mlops_assets.core.file_sensors import SENSOR_NAME_TAG
from mlops_assets.core.stage_lock import StageLock
from mlops_assets.core.storage import StorageResource
from mlops_assets.hosting.image_holds import LetGo
from mlops_assets.model.smoke import SmokeSample
from mlops_assets.registry.protocol import PRODUCTION_ALIAS, QA_ALIAS, RELEASE_STATE_TAG
from mlops_assets.registry.resource import RegistryResource
from mlops_assets.release.build_context import image_tag
from mlops_assets.release.builders import ImageBuilder
from mlops_assets.release.deployments import Release
from mlops_assets.release.events import (
    BY_TAG,
    ProductionEvent,
    event_log_key,
    operator,
    read_log,
    record,
    version_before_last_change,
)
from mlops_assets.release.from_registry import (
    ReleaseInputError,
    assemble_version,
    restorable_release,
    smoke_sample,
)
from mlops_assets.release.retention import Pruned, kept_versions, prune
from mlops_assets.release.rollout import RolloutError, roll_out_production, roll_out_qa
from mlops_assets.release.smoke import SmokeResult
from mlops_assets.release.targets import DeploymentTarget
from mlops_assets.runner.client import ProjectRunner, runner_for_version
from mlops_assets.runner.environments import ProjectEnvironmentError, version_python

model_versions = dg.DynamicPartitionsDefinition(name="model_versions")


class ReleaseSettings(dg.ConfigurableResource):
    contexts_dir: str = Field(description="Local folder where build contexts are assembled.")
    image_repository: str = Field(default="mlops-assets/scoring", description="Image name without tag.")
    azure_serving: bool = Field(
        default=False,
        description="Add the serving-azure group to the image: a request log on Blob Storage, "
        "telemetry to Application Insights (MLOPS_IMAGE_AZURE_SERVING).",
    )
    project_folder: str = Field(
        default="",
        description="The model project whose spec the image serves by (its features, their rules, the "
        "artifact's trusted types); empty: every feature a number.",
    )
    python_executable: str = Field(
        default=sys.executable, description="The project's interpreter: a release loads the artifact there."
    )
    venvs_dir: str = Field(description="The process runtime's venvs (pruned with the contexts).")
    environments_dir: str = Field(
        default="", description="Where a version whose project locks packages gets its environment."
    )
    package_index: str = Field(
        default="https://pypi.org/simple", description="Where a project's own packages come from."
    )
    keep_releases: int = Field(
        default=3,
        ge=0,
        description="Build contexts and venvs kept beyond the versions an alias names or a deployment "
        "serves: those of the newest N registered versions (MLOPS_KEEP_RELEASES).",
    )

    def serving_spec(self) -> dict | None:
        if not self.project_folder:
            return None
        from mlops_assets.project.spec import read_spec

        return read_spec(Path(self.project_folder)).serving_dict()

    def runner(self, manifest: dict) -> ProjectRunner:
        """The runner a release checks that a version's artifact loads in: with the package the
        version carries (the project's folder for one registered before versions carried it)."""
        root = (
            Path(self.environments_dir) if self.environments_dir else Path(self.contexts_dir) / "environments"
        )
        try:
            python = version_python(manifest, root, self.package_index, self.python_executable)
        except ProjectEnvironmentError as exc:
            raise dg.Failure(str(exc)) from None
        return runner_for_version(manifest, Path(self.project_folder or "."), python)


@dg.asset(
    partitions_def=model_versions,
    group_name="release",
    kinds={"docker"},
    deps=[keys.REGISTERED_MODEL],  # lineage: the version it packages comes from the registry
    description=(
        "The scoring image of one registered version: build context (Dockerfile, locked serving "
        "requirements, serving code, artifact, manifest) tagged with its content digest."
    ),
)
def scoring_image(
    context: dg.AssetExecutionContext,
    registry: RegistryResource,
    image_builder: ImageBuilder,
    release: ReleaseSettings,
    stage_lock: StageLock,  # held for the whole run: one run of this stage at a time
) -> dg.Output[dict]:
    version = int(context.partition_key)
    models = registry.get_registry()
    # Verified against the registry before it is packaged: a tampered artifact never reaches an image.
    try:
        build_context, new = assemble_version(
            models,
            version,
            Path(release.contexts_dir),
            release.azure_serving,
            release.serving_spec(),
            release.runner,
            release.package_index,
        )
    except ReleaseInputError as exc:
        raise dg.Failure(f"{exc} (scoring_image refuses to package it)") from exc
    if build_context.repaired:
        context.log.warning(
            f"{build_context.path}: its files no longer matched the registry's; assembled again"
        )
    build = image_builder.build(build_context, release.image_repository)
    context.log.info(f"{build.image}: {build.detail}" + ("" if new else " (context reused: same inputs)"))
    value = {
        "version": version,
        "image": build.image,
        "reference": build.reference,
        "built": build.built,
        "builder": image_builder.backend_name,
        "reused": not new,
        **build_context.to_dict(),
    }
    return dg.Output(
        value,
        metadata={
            "image": build.image,
            "reference": build.reference,
            "digest": build_context.digest,
            "code_digest": build_context.code_digest,
            "built": build.built,
            "detail": build.detail,
            **(
                {
                    "image_id": build.image_id,
                    "size_mb": round(build.size_bytes / 1e6, 1),
                    "build_seconds": round(build.build_seconds, 1),
                }
                if build.image_id
                else {}
            ),
            "context": dg.MetadataValue.path(str(build_context.path)),
            "files": build_context.files,
        },
        data_version=dg.DataVersion(build_context.digest[:16]),
    )


def _smoke_check(result: SmokeResult, asset: dg.AssetKey) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="smoke_test",
        passed=result.passed,
        metadata={
            "url": result.url,
            "failures": "; ".join(result.failures) or "none",
            "predictions": dg.MetadataValue.json(result.predictions),
            "latency_ms": result.latency_ms,
        },
        description="passed" if result.passed else "; ".join(result.failures),
    )


@dg.asset(
    partitions_def=model_versions,
    group_name="release",
    kinds={"python"},
    check_specs=[
        dg.AssetCheckSpec(
            "smoke_test",
            asset=keys.QA_DEPLOYMENT,
            description="The sample payload with a key: the model's own predictions, version header, 401 without key.",
        )
    ],
    description="Deploy the version to QA, smoke-test it; on failure tear QA down and fail. Alias `qa` moves on success.",
)
def qa_deployment(
    context: dg.AssetExecutionContext,
    scoring_image: dict,
    deploy_target: DeploymentTarget,
    registry: RegistryResource,
    release: ReleaseSettings,
    storage: StorageResource,
    stage_lock: StageLock,  # held for the whole run: one run of this stage at a time
):
    version = context.partition_key
    models = registry.get_registry()
    sample = _sample(models, version, release)
    to_release = _verified_release(context, models, version, scoring_image, release)
    try:
        rollout = roll_out_qa(deploy_target, to_release, sample)
    except RolloutError as exc:
        yield _smoke_check(exc.smoke, keys.QA_DEPLOYMENT)
        models.remove_alias(QA_ALIAS)  # the QA slot is empty now, whichever version held it
        _log_event(context, storage, "qa_teardown", version, None, str(exc))
        raise dg.Failure(str(exc)) from exc
    yield _smoke_check(rollout.smoke, keys.QA_DEPLOYMENT)
    models.set_alias(QA_ALIAS, int(version))
    models.set_tag(int(version), RELEASE_STATE_TAG, "qa")
    endpoint = rollout.endpoint
    context.log.info(f"version {version} passed QA at {endpoint.url}; alias {QA_ALIAS} moved")
    yield dg.Output(
        {
            **endpoint.to_dict(),
            "smoke_latency_ms": rollout.smoke.latency_ms,
            "target": deploy_target.backend_name,
        },
        metadata={
            "url": dg.MetadataValue.url(endpoint.url),
            "image": endpoint.image,
            "target": deploy_target.backend_name,
            "smoke_sample": sample.source,
        },
    )


@dg.asset(
    partitions_def=model_versions,
    group_name="release",
    kinds={"python"},
    deps=[qa_deployment],
    check_specs=[
        dg.AssetCheckSpec(
            "smoke_test",
            asset=keys.PROD_DEPLOYMENT,
            description="The production URL answers the sample with the model's own predictions.",
        )
    ],
    description=(
        "Release to production without failing a request: a model swap when only the model changed, a "
        "process handover when the code did; smoke test; on failure roll back to the previous version and fail. "
        "Alias `production` moves only on success; QA is torn down once production has the version."
    ),
)
def prod_deployment(
    context: dg.AssetExecutionContext,
    scoring_image: dict,
    deploy_target: DeploymentTarget,
    registry: RegistryResource,
    release: ReleaseSettings,
    alerts: AlertWebhook,
    storage: StorageResource,
    image_builder: ImageBuilder,
    stage_lock: StageLock,  # held for the whole run: one run of this stage at a time
):
    version = context.partition_key
    models = registry.get_registry()
    sample = _sample(models, version, release)

    def restorable(previous):
        return restorable_release(
            models,
            previous,
            Path(release.contexts_dir),
            release.azure_serving,
            release.serving_spec(),
            release.runner,
            release.package_index,
        )

    def alert(message: str) -> None:
        alerts.send(f"mlops-assets: {message}", run_id=context.run.run_id, job=context.run.job_name)

    try:
        to_release = _verified_release(context, models, version, scoring_image, release)
    except dg.Failure:  # refused before anything switched: production is as it was
        _tear_down_qa(deploy_target, models)
        models.set_tag(int(version), RELEASE_STATE_TAG, "failed")
        raise
    try:
        rollout = roll_out_production(deploy_target, to_release, sample, restorable, alert)
    except RolloutError as exc:
        yield _smoke_check(exc.smoke, keys.PROD_DEPLOYMENT)
        _tear_down_qa(deploy_target, models)  # QA has done its part; nothing of this release keeps running
        if not exc.restore_failed:
            # "rolled back" only if it ever served; a deploy that failed first leaves it "failed"
            # (out of the gate's bar, as a rolled-back one is).
            models.set_tag(int(version), RELEASE_STATE_TAG, "rolled_back" if exc.switched else "failed")
            if exc.switched:
                serving = deploy_target.production()
                restored = serving.version if serving else None
                _log_event(context, storage, "automatic_rollback", version, restored, str(exc))
        again = (
            ""
            if exc.switched
            else f"; once its cause is fixed, release it again: mlops-assets promote {version}"
        )
        raise dg.Failure(f"{exc}{again}", metadata={"rollback": exc.outcome}) from exc
    yield _smoke_check(rollout.smoke, keys.PROD_DEPLOYMENT)
    endpoint, previous = rollout.endpoint, rollout.previous
    if previous is not None and previous.version != version:
        models.set_tag(int(previous.version), RELEASE_STATE_TAG, "superseded")
    models.set_alias(PRODUCTION_ALIAS, int(version))
    models.set_tag(int(version), RELEASE_STATE_TAG, "production")
    _tear_down_qa(deploy_target, models)
    reason = context.run.tags.get("mlops/reason", "")
    trigger = context.run.tags.get("mlops/trigger", "")
    action = {"manual-promote": "promote", "manual-rollback": "rollback"}.get(trigger, "release")
    moved_from = previous.version if previous is not None and previous.version != version else None
    if previous is not None and previous.version == version:
        # Released again while it serves: what served before it stays the way back.
        before, last = version_before_last_change(read_log(storage.get(), _event_key()).trusted)
        moved_from = before if last is not None and last.to_version == str(version) else None
    _log_event(context, storage, action, moved_from, version, reason)
    context.log.info(
        f"version {version} is in production at {endpoint.url} ({rollout.mode}) {reason}".strip()
    )
    pruned, images = _prune_release_files(models, release, image_builder, endpoint)
    (context.log.warning if images.error else context.log.info)(
        f"release files: {pruned.summary()}; images: {images.summary()}"
    )
    yield dg.Output(
        {
            **endpoint.to_dict(),
            "mode": rollout.mode,
            "previous_version": previous.version if previous else None,
            "target": deploy_target.backend_name,
        },
        metadata={
            "url": dg.MetadataValue.url(endpoint.url),
            "mode": rollout.mode,
            "previous_version": previous.version if previous else "none",
            "image": endpoint.image,
            "target": deploy_target.backend_name,
            "reason": reason or "release",
            "smoke_sample": sample.source,
        },
    )


def _prune_release_files(
    models, release: ReleaseSettings, image_builder: ImageBuilder, serving
) -> tuple[Pruned, LetGo]:
    """What this home keeps on disk after a release: the files and images of the versions an alias
    names or a deployment serves, and of the newest ``keep_releases``; the rest goes
    (release/retention.py, hosting/image_holds.py)."""
    named = {
        str(v.version)
        for v in (models.get_alias(PRODUCTION_ALIAS), models.get_alias(QA_ALIAS))
        if v is not None
    }
    named.add(str(serving.version))
    in_use = {Path(serving.context).resolve()} if serving.context else set()
    kept = kept_versions([v.version for v in models.list_versions()], named, release.keep_releases)
    pruned = prune(Path(release.contexts_dir), Path(release.venvs_dir), kept, in_use)
    try:
        images = image_builder.let_go({image_tag(name) for name in pruned.kept_contexts}, {serving.image})
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:  # housekeeping: never fails a release
        images = LetGo(error=f"{type(exc).__name__}: {str(exc)[-300:]}")
    return pruned, images


def _tear_down_qa(deploy_target: DeploymentTarget, models) -> None:
    """Stop QA and clear the ``qa`` alias: no version reads as "in QA" once nothing serves there."""
    deploy_target.teardown_qa()
    models.remove_alias(QA_ALIAS)


def _log_event(context, storage: StorageResource, action: str, from_version, to_version, reason: str) -> None:
    """One entry in the production event log: who started the run (a name they gave, else the
    sensor), and the OS user and host of the process that made the change."""
    tags = context.run.tags
    by = tags.get(BY_TAG) or (f"sensor {tags[SENSOR_NAME_TAG]}" if SENSOR_NAME_TAG in tags else "dagster")
    user, host = operator()
    event = ProductionEvent(action, to_version, from_version, reason, by, user, host, context.run.run_id)
    context.log.info(record(storage.get(), event, _event_key()).line())


def _event_key() -> bytes:
    from mlops_assets.settings import get_settings

    return event_log_key(get_settings())


def _sample(models, version: str, release: ReleaseSettings) -> SmokeSample:
    """What the smoke test expects, from the registry (never from the deployed copy), before any switch."""
    try:
        return smoke_sample(models, int(version), release.serving_spec())
    except ReleaseInputError as exc:
        raise dg.Failure(f"{exc} (not deployed)") from exc


def _verified_release(
    context, models, version: str, scoring_image: dict, release: ReleaseSettings
) -> Release:
    """What scoring_image built, with its build context verified again against the registry now:
    a context edited since (a promote or rollback reuses old ones) is assembled again from the
    registry, and one the registry no longer gives (its files changed) is refused. The artifact's
    bytes are checked; that they load was checked in the runner when scoring_image packaged them
    (the same bytes: the context's digest covers them)."""
    try:
        verified, _ = assemble_version(
            models,
            int(version),
            Path(release.contexts_dir),
            release.azure_serving,
            release.serving_spec(),
            package_index=release.package_index,
        )
    except ReleaseInputError as exc:
        raise dg.Failure(f"{exc} (not deployed)") from exc
    if verified.digest != scoring_image["digest"]:
        raise dg.Failure(
            f"version {version}: the registry's files now give build context {verified.tag}, but "
            f"scoring_image built {scoring_image['tag']}: materialise scoring_image again (not deployed)"
        )
    if verified.repaired:
        context.log.warning(f"{verified.path}: edited since scoring_image; assembled again from the registry")
    return Release(
        version, scoring_image.get("reference", scoring_image["image"]), verified.path, verified.code_digest
    )
