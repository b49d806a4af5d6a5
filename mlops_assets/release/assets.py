"""Release assets, one partition per registered version: the scoring image first."""

import json
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.registry.protocol import RegistryResource
from mlops_assets.release.build_context import assemble, serving_requirements
from mlops_assets.release.builders import ImageBuilder
from mlops_assets.serving.artifact import MANIFEST_NAME, ArtifactError, load_verified_model
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
