"""Release assets, one partition per registered version: the scoring image first."""

import json
from pathlib import Path

import dagster as dg
import numpy as np
from pydantic import Field

from mlops_assets.core import keys
from mlops_assets.registry.protocol import PRODUCTION_ALIAS, QA_ALIAS, RELEASE_STATE_TAG, RegistryResource
from mlops_assets.release.build_context import assemble, serving_requirements
from mlops_assets.release.builders import ImageBuilder
from mlops_assets.release.local_target import DeploymentError
from mlops_assets.release.smoke import SAMPLE_ROWS, SmokeResult, smoke_test
from mlops_assets.release.targets import DeploymentTarget, Endpoint, Release
from mlops_assets.serving.artifact import MANIFEST_NAME, ArtifactError, load_release, load_verified_model
from mlops_assets.training.train import ARTIFACT_NAME

model_versions = dg.DynamicPartitionsDefinition(name="model_versions")


class ReleaseSettings(dg.ConfigurableResource):
    contexts_dir: str = Field(description="Local folder where build contexts are assembled.")
    image_repository: str = Field(default="mlops-assets/scoring", description="Image name without tag.")


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
) -> dg.Output[dict]:
    version = int(context.partition_key)
    models = registry.get_registry()
    registered = models.get_version(version)
    artifact = models.read_file(version, ARTIFACT_NAME)
    # Verified before it is packaged: a tampered artifact never reaches an image.
    try:
        load_verified_model(artifact, registered.tags["artifact_sha256"], f"version {version}")
    except ArtifactError as exc:
        raise dg.Failure(f"{exc} (scoring_image refuses to package it)") from exc
    manifest = json.loads(models.read_file(version, MANIFEST_NAME))
    if manifest.get("sha256") != registered.tags["artifact_sha256"]:
        raise dg.Failure(f"version {version}: manifest sha256 differs from the registry's; re-register it")
    build_context, new = assemble(
        Path(release.contexts_dir), ARTIFACT_NAME, artifact, manifest, serving_requirements()
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
            "context": dg.MetadataValue.path(str(build_context.path)),
            "files": build_context.files,
        },
        data_version=dg.DataVersion(build_context.digest[:16]),
    )


def _expected_predictions(model_dir: Path) -> list[float]:
    """The model's own predictions of the sample (scikit-learn's predict, not the fast path)."""
    loaded = load_release(model_dir)
    return loaded.model.predict(np.asarray(SAMPLE_ROWS, dtype=float)).tolist()


def _smoke_check(result: SmokeResult, asset: str) -> dg.AssetCheckResult:
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
):
    version = context.partition_key
    release = _release_of(version, scoring_image)
    try:
        endpoint = deploy_target.deploy_qa(release)
    except DeploymentError as exc:
        yield _smoke_check(SmokeResult("(not deployed)", failures=[str(exc)]), "qa_deployment")
        raise dg.Failure(f"QA deployment of version {version} failed: {exc}") from exc
    result = _smoke(endpoint, deploy_target, release)
    yield _smoke_check(result, "qa_deployment")
    if not result.passed:
        deploy_target.teardown_qa()
        raise dg.Failure(
            f"QA smoke test of version {version} failed, QA torn down: {'; '.join(result.failures)}"
        )
    models = registry.get_registry()
    models.set_alias(QA_ALIAS, int(version))
    models.set_tag(int(version), RELEASE_STATE_TAG, "qa")
    context.log.info(f"version {version} passed QA at {endpoint.url}; alias {QA_ALIAS} moved")
    yield dg.Output(
        {**endpoint.to_dict(), "smoke_latency_ms": result.latency_ms, "target": deploy_target.backend_name},
        metadata={
            "url": dg.MetadataValue.url(endpoint.url),
            "image": endpoint.image,
            "target": deploy_target.backend_name,
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
):
    version = context.partition_key
    release = _release_of(version, scoring_image)
    previous = deploy_target.production()
    mode = "not deployed"
    try:
        endpoint, mode = deploy_target.release_production(release)
        result = _smoke(endpoint, deploy_target, release)
    except DeploymentError as exc:
        result = SmokeResult(previous.url if previous else "(not deployed)", failures=[str(exc)])
    yield _smoke_check(result, "prod_deployment")
    models = registry.get_registry()
    if not result.passed:
        models.set_tag(int(version), RELEASE_STATE_TAG, "rolled_back")
        if previous is not None:
            restored = deploy_target.restore_production(previous)
            outcome = f"rolled back to version {restored.version}"
        else:
            deploy_target.stop_production()
            outcome = "no previous version: production stopped"
        raise dg.Failure(
            f"production release of version {version} failed ({'; '.join(result.failures)}); {outcome}",
            metadata={"rollback": outcome},
        )
    if previous is not None and previous.version != version:
        models.set_tag(int(previous.version), RELEASE_STATE_TAG, "superseded")
    models.set_alias(PRODUCTION_ALIAS, int(version))
    models.set_tag(int(version), RELEASE_STATE_TAG, "production")
    deploy_target.teardown_qa()
    reason = context.run.tags.get("mlops/reason", "")
    context.log.info(f"version {version} is in production at {endpoint.url} ({mode}) {reason}".strip())
    yield dg.Output(
        {
            **endpoint.to_dict(),
            "mode": mode,
            "previous_version": previous.version if previous else None,
            "target": deploy_target.backend_name,
        },
        metadata={
            "url": dg.MetadataValue.url(endpoint.url),
            "mode": mode,
            "previous_version": previous.version if previous else "none",
            "image": endpoint.image,
            "target": deploy_target.backend_name,
            "reason": reason or "release",
        },
    )


def _smoke(endpoint: Endpoint, target: DeploymentTarget, release: Release) -> SmokeResult:
    """The sample through the endpoint with the target's key, against the model's own predictions."""
    expected = _expected_predictions(release.context / "model")
    return smoke_test(endpoint.url, target.scoring_keys()[0], expected, release.version)


def _release_of(version: str, scoring_image: dict) -> Release:
    return Release(
        version,
        scoring_image.get("reference", scoring_image["image"]),
        Path(scoring_image["path"]),
        scoring_image["code_digest"],
    )
