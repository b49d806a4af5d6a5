"""A version's compiled graph as the registry keeps it: the graph beside the artifact, and the
verdict (how the graph is fed, or why the model is served as fitted) in the version's tags, so
``mlops-assets versions`` and the UI show it without reading a file."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from mlops_assets.model.artifact import verify_sha256

if TYPE_CHECKING:
    from mlops_assets.registry.protocol import ModelRegistry

COMPILED_TAG = "compiled"
TAG_REASON_CHARS = 300  # a registry's tag has a size limit; the manifest keeps the whole reason
NOT_COMPILED_BEFORE = {"reason": "registered before models were compiled"}


def compiled_tag(block: dict) -> str:
    """The manifest's ``compiled`` block as a tag's value (a long reason cut)."""
    shown = dict(block)
    if len(shown.get("reason", "")) > TAG_REASON_CHARS:
        shown["reason"] = shown["reason"][: TAG_REASON_CHARS - 1] + "…"
    return json.dumps(shown, sort_keys=True)


def version_verdict(tags: dict[str, str]) -> dict:
    """What the version's tags say of its graph (a version registered before, that it has none)."""
    text = tags.get(COMPILED_TAG)
    return json.loads(text) if text else dict(NOT_COMPILED_BEFORE)


def read_graph(models: ModelRegistry, version: int, block: dict) -> bytes:
    """The graph ``block`` (a manifest's ``compiled``, with its ``file``) names, from the registry,
    checked against its sha256 (an ArtifactError names a file that is not it)."""
    graph = models.read_file(version, block["file"])
    verify_sha256(graph, block["sha256"], f"version {version}'s {block['file']}")
    return graph


def verdict_words(block: dict) -> str:
    """``compiled (onnx, columns of float32)`` or ``served as fitted: <why>``."""
    if "sha256" in block:
        return f"compiled ({block.get('format', 'onnx')}, {block['inputs']} of {block['numbers']})"
    return f"served as fitted: {block.get('reason', 'no graph')}"
