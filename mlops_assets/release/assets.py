"""Release assets, one partition per registered version: the scoring image first."""

import json
from pathlib import Path

import dagster as dg
import numpy as np
from pydantic import Field

from mlops_assets.registry.protocol import PRODUCTION_ALIAS, QA_ALIAS, RELEASE_STATE_TAG, RegistryResource
from mlops_assets.release.build_context import assemble, serving_requirements
from mlops_assets.release.builders import ImageBuilder
from mlops_assets.release.local_target import DeploymentError, LocalTarget
from mlops_assets.release.smoke import SAMPLE_ROWS, SmokeResult, smoke_test
from mlops_assets.serving.artifact import MANIFEST_NAME, ArtifactError, load_release, load_verified_model
from mlops_assets.serving.keys import ensure_key_file, read_keys
from mlops_assets.settings import get_settings
from mlops_assets.training.train import ARTIFACT_NAME

model_versions = dg.DynamicPartitionsDefinition(name="model_versions")


class ReleaseSettings(dg.ConfigurableResource):
    contexts_dir: str = Field(description="Local folder where build contexts are assembled.")
    image_repository: str = Field(default="mlops-assets/scoring", description="Image name without tag.")


@dg.asset(
    partitions_def=model_versions,
    group_name="release",
    kinds={"docker"},
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
        "built": build.built,
        "builder": image_builder.backend_name,
        "reused": not new,
        **build_context.to_dict(),
    }
    return dg.Output(
        value,
        metadata={
            "image": build.image,
            "digest": build_context.digest,
            "code_digest": build_context.code_digest,
            "built": build.built,
            "detail": build.detail,
            "context": dg.MetadataValue.path(str(build_context.path)),
            "files": build_context.files,
        },
        data_version=dg.DataVersion(build_context.digest[:16]),
    )


class LocalDeploymentTarget(dg.ConfigurableResource):
    """Deployments as processes on 127.0.0.1 under MLOPS_HOME (QA on one port, production another)."""

    home: str
    qa_port: int = Field(default=8101, description="Port of the QA deployment.")
    production_port: int = Field(default=8100, description="Stable port of the production deployment.")
    ready_timeout_seconds: float = Field(
        default=90, gt=0, description="How long a new service may take to answer ready before it fails."
    )

    @property
    def backend_name(self) -> str:
        return "local"

    def target(self) -> LocalTarget:
        return LocalTarget(Path(self.home))

    def scoring_key(self) -> str:
        """A key the service accepts, for the smoke test (never logged)."""
        settings = get_settings()
        if settings.scoring_keys:
            return settings.scoring_keys.get_secret_value().split(",")[0].strip()
        ensure_key_file(settings.keys_file)
        return read_keys(settings.keys_file)[0]


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
            asset="qa_deployment",
            description="The sample payload with a key: the model's own predictions, version header, 401 without key.",
        )
    ],
    description="Deploy the version to QA, smoke-test it; on failure tear QA down and fail. Alias `qa` moves on success.",
)
def qa_deployment(
    context: dg.AssetExecutionContext,
    scoring_image: dict,
    deploy_target: LocalDeploymentTarget,
    registry: RegistryResource,
):
    version = context.partition_key
    build_dir = Path(scoring_image["path"])
    target = deploy_target.target()
    try:
        deployment = target.deploy(
            "qa",
            build_dir,
            version,
            scoring_image["image"],
            deploy_target.qa_port,
            deploy_target.ready_timeout_seconds,
        )
    except DeploymentError as exc:
        yield _smoke_check(
            SmokeResult(f"http://127.0.0.1:{deploy_target.qa_port}", failures=[str(exc)]), "qa_deployment"
        )
        raise dg.Failure(f"QA deployment of version {version} failed: {exc}") from exc
    result = smoke_test(
        deployment.url, deploy_target.scoring_key(), _expected_predictions(build_dir / "model"), version
    )
    yield _smoke_check(result, "qa_deployment")
    if not result.passed:
        target.stop("qa")
        raise dg.Failure(
            f"QA smoke test of version {version} failed, QA torn down: {'; '.join(result.failures)}"
        )
    models = registry.get_registry()
    models.set_alias(QA_ALIAS, int(version))
    models.set_tag(int(version), RELEASE_STATE_TAG, "qa")
    context.log.info(f"version {version} passed QA at {deployment.url}; alias {QA_ALIAS} moved")
    yield dg.Output(
        {**deployment.to_dict(), "smoke_latency_ms": result.latency_ms},
        metadata={
            "url": dg.MetadataValue.url(deployment.url),
            "image": deployment.image,
            "pid": deployment.pid,
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
            asset="prod_deployment",
            description="The production URL answers the sample with the model's own predictions.",
        )
    ],
    description=(
        "Release to production on the stable port: a model swap when only the model changed, a new "
        "process when the code did; smoke test; on failure roll back to the previous version and fail. "
        "Alias `production` moves only on success; QA is torn down once production has the version."
    ),
)
def prod_deployment(
    context: dg.AssetExecutionContext,
    scoring_image: dict,
    deploy_target: LocalDeploymentTarget,
    registry: RegistryResource,
):
    version = context.partition_key
    build_dir = Path(scoring_image["path"])
    target = deploy_target.target()
    previous = target.get("production")
    url = f"http://127.0.0.1:{deploy_target.production_port}"
    mode = "not deployed"
    try:
        deployment, mode = target.release(
            "production",
            build_dir,
            scoring_image["code_digest"],
            version,
            scoring_image["image"],
            deploy_target.production_port,
            deploy_target.ready_timeout_seconds,
        )
        result = smoke_test(
            deployment.url, deploy_target.scoring_key(), _expected_predictions(build_dir / "model"), version
        )
    except DeploymentError as exc:
        result = SmokeResult(url, failures=[str(exc)])
    yield _smoke_check(result, "prod_deployment")
    models = registry.get_registry()
    if not result.passed:
        models.set_tag(int(version), RELEASE_STATE_TAG, "rolled_back")
        if previous is not None:
            restored, _ = target.release(
                "production",
                Path(previous.model_dir).parent,
                previous.code_digest,
                previous.version,
                previous.image,
                previous.port,
            )
            outcome = f"rolled back to version {restored.version}"
        else:
            target.stop("production")
            outcome = "no previous version: production stopped"
        raise dg.Failure(
            f"production release of version {version} failed ({'; '.join(result.failures)}); {outcome}",
            metadata={"rollback": outcome},
        )
    if previous is not None and previous.version != version:
        models.set_tag(int(previous.version), RELEASE_STATE_TAG, "superseded")
    models.set_alias(PRODUCTION_ALIAS, int(version))
    models.set_tag(int(version), RELEASE_STATE_TAG, "production")
    target.stop("qa")
    reason = context.run.tags.get("mlops/reason", "")
    context.log.info(f"version {version} is in production at {deployment.url} ({mode}) {reason}".strip())
    yield dg.Output(
        {**deployment.to_dict(), "mode": mode, "previous_version": previous.version if previous else None},
        metadata={
            "url": dg.MetadataValue.url(deployment.url),
            "mode": mode,
            "previous_version": previous.version if previous else "none",
            "image": deployment.image,
            "reason": reason or "release",
        },
    )
