"""What a release takes from the registry, verified: the build context, the smoke sample, a restore.

The registry is the source of truth for every release input. A build context on disk is a cache
of it (content-addressed, so assembling it again gives the same folder), and the smoke test's
expectation comes from the registry's manifest, never from the copy that was deployed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mlops_assets.model.artifact import ArtifactError, verify_sha256
from mlops_assets.model.manifest import MANIFEST_NAME
from mlops_assets.model.smoke import SmokeSample
from mlops_assets.project.package import sources_of
from mlops_assets.project.spec import ProjectError
from mlops_assets.registry.compiled import read_graph
from mlops_assets.registry.protocol import ModelRegistry
from mlops_assets.release.build_context import BuildContext, assemble, intact, serving_requirements
from mlops_assets.release.deployments import Endpoint, Release
from mlops_assets.runner.client import Artifact, ProjectRunError, ProjectRunner
from mlops_assets.training.train import ARTIFACT_NAME

# The runner a version's artifact loads in, given its manifest (its own package mounted there).
Runners = Callable[[dict], ProjectRunner]


class ReleaseInputError(ValueError):
    """A registered version whose files do not verify: it must not be packaged or deployed."""


def verified_files(
    models: ModelRegistry, version: int, current_spec: dict | None = None, runners: Runners | None = None
) -> tuple[bytes, dict, dict | None, dict[str, bytes]]:
    """The version's artifact, its manifest and the serving spec it was registered with (its
    manifest keeps it, so a promote or restore after a spec edit serves the version's own rules;
    ``current_spec``, the model project's today, only for a version registered before manifests
    carried one), each checked against the registry. Given ``runners``, the artifact is loaded in
    the version's runner too: it may hold, beyond skops' defaults, only that spec's trusted types,
    and it loads with the package it carries. Last, the version's other files its manifest names
    (its compiled graph), each checked against the sha256 the manifest gives it."""
    registered = models.get_version(version)
    try:
        manifest = json.loads(models.read_file(version, MANIFEST_NAME))
    except ValueError as exc:
        raise ReleaseInputError(f"version {version}: its manifest is not JSON ({exc})") from exc
    spec = manifest.get("serving_spec") or current_spec
    artifact, sha256 = models.read_file(version, ARTIFACT_NAME), registered.tags["artifact_sha256"]
    try:
        verify_sha256(artifact, sha256, f"version {version}")
    except ArtifactError as exc:
        raise ReleaseInputError(str(exc)) from exc
    if manifest.get("sha256") != sha256:
        raise ReleaseInputError(
            f"version {version}: manifest sha256 differs from the registry's; re-register it"
        )
    if runners is not None:
        trusted = tuple(spec["trusted_types"]) if spec else ()
        try:
            runners(manifest).verify(Artifact(artifact, sha256, trusted, f"version {version}"))
        except (ArtifactError, ProjectError, ProjectRunError, ValueError) as exc:
            raise ReleaseInputError(str(exc)) from exc
    return artifact, manifest, spec, _compiled_files(models, version, manifest)


def _compiled_files(models: ModelRegistry, version: int, manifest: dict) -> dict[str, bytes]:
    block = manifest.get("compiled") or {}
    if not block.get("file"):
        return {}
    try:
        return {block["file"]: read_graph(models, version, block)}
    except ArtifactError as exc:
        raise ReleaseInputError(str(exc)) from exc


def assemble_version(
    models: ModelRegistry,
    version: int,
    contexts_dir: Path,
    azure_serving: bool = False,
    serving_spec: dict | None = None,
    runners: Runners | None = None,
    package_index: str = "",
) -> tuple[BuildContext, bool]:
    """The version's build context (assembled if it is not there yet) and whether it was new. It
    packages the spec the version was registered with; ``serving_spec`` (today's) only where the
    version carries none, and the project package it carries. Given ``runners``, the artifact is
    loaded in the version's runner first."""
    artifact, manifest, serving_spec, model_files = verified_files(models, version, serving_spec, runners)
    if serving_spec is not None and [f["name"] for f in serving_spec["features"]] != manifest["features"]:
        raise ReleaseInputError(
            f"version {version}: trained on features {manifest['features']}, the model project now "
            f"lists {[f['name'] for f in serving_spec['features']]}; it cannot be served by this project"
        )
    azure = serving_requirements(azure=True) if azure_serving else b""
    try:
        package = sources_of(manifest)
    except ValueError as exc:
        raise ReleaseInputError(str(exc)) from exc
    return assemble(
        contexts_dir,
        ARTIFACT_NAME,
        artifact,
        manifest,
        serving_requirements(),
        azure,
        serving_spec,
        package,
        package_index,
        model_files,
    )


def smoke_sample(models: ModelRegistry, version: int, current_spec: dict | None = None) -> SmokeSample:
    """The manifest's smoke block: the model project's holdout rows and the registered model's own
    predictions for them. A version without one cannot be checked, so it is not released."""
    _, manifest, _, _ = verified_files(models, version, current_spec)
    block = manifest.get("smoke")
    if not block:
        raise ReleaseInputError(
            f"version {version}: its manifest has no smoke block (registered before manifests carried "
            "one), so no deployment of it can be checked; register the model again"
        )
    tolerance = (manifest.get("compiled") or {}).get("tolerance", {})
    return SmokeSample(block["rows"], block["predictions"], "manifest", tolerance.get("relative", 1e-9))


def restorable_release(
    models: ModelRegistry,
    previous: Endpoint,
    contexts_dir: Path,
    azure_serving: bool = False,
    serving_spec: dict | None = None,
    runners: Runners | None = None,
    package_index: str = "",
) -> Release:
    """What served before, as a release again: its image reference, and (for a target that serves
    from a build context) that context if it is intact, else assembled anew from the registry
    (missing on this machine, or edited since)."""
    context = Path(previous.context) if previous.context else None
    if context is not None and not intact(context):
        context = assemble_version(
            models, int(previous.version), contexts_dir, azure_serving, serving_spec, runners, package_index
        )[0].path
    return Release(previous.version, previous.image, context, previous.code_digest)
