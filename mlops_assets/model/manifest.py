"""A release's manifest (``manifest.json`` beside the artifact): found as Azure ML mounts models,
and read with the keys every reader needs. ``registry/manifest.py`` writes it."""

import json
import os
from pathlib import Path
from typing import Any

from mlops_assets.model.artifact import ArtifactError

MANIFEST_NAME = "manifest.json"
MANIFEST_KEYS = ("model_name", "version", "artifact", "sha256", "features")


def find_manifest(root: str | os.PathLike) -> Path:
    """The one manifest.json under ``root``, searching subfolders as Azure ML mounts models."""
    root = Path(root)
    found = sorted(
        Path(folder) / MANIFEST_NAME
        for folder, _, files in os.walk(root, followlinks=True)
        if MANIFEST_NAME in files
    )
    if not found:
        raise ArtifactError(f"{root}: no {MANIFEST_NAME} in it or its subfolders")
    if len(found) > 1:
        raise ArtifactError(f"{root}: {len(found)} manifests ({', '.join(map(str, found))}); expected one")
    return found[0]


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, or an ArtifactError naming it and what it lacks."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from exc
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise ArtifactError(f"{path}: manifest lacks {', '.join(missing)}")
    return manifest
