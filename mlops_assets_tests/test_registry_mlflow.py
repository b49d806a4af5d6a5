"""The MLflow registry backend on a real SQLite store: idempotent registration, files, aliases, tags."""

import hashlib

import pytest

from mlops_assets.registry.mlflow_backend import MlflowRegistry


@pytest.fixture
def registry(tmp_path) -> MlflowRegistry:
    return MlflowRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=(tmp_path / "artifacts").as_uri(),
        model_name="test-model",
    )


def tags(fingerprint: str, artifact: bytes) -> dict[str, str]:
    return {"fingerprint": fingerprint, "artifact_sha256": hashlib.sha256(artifact).hexdigest(), "mse": "1.5"}


def test_same_fingerprint_registered_twice_is_the_same_version(registry):
    assert registry.list_versions() == []
    first = registry.register(b"model-a", "model.skops", tags("fp-a", b"model-a"), {"mse": 1.5})
    again = registry.register(
        b"model-a-rebuilt", "model.skops", tags("fp-a", b"model-a-rebuilt"), {"mse": 1.5}
    )
    other = registry.register(b"model-b", "model.skops", tags("fp-b", b"model-b"), {"mse": 1.2})
    assert (first.version, again.version, other.version) == (1, 1, 2)
    assert [v.version for v in registry.list_versions()] == [1, 2]
    assert registry.read_file(1, "model.skops") == b"model-a"  # the first bytes stay
    assert registry.find_by_fingerprint("fp-b").version == 2
    assert registry.find_by_fingerprint("nope") is None


def test_manifest_aliases_and_tags(registry):
    registry.register(b"m", "model.skops", tags("fp", b"m"), {"mse": 1.0})
    registry.write_manifest(1, {"version": 1, "sha256": "x"})
    assert b'"sha256": "x"' in registry.read_file(1, "manifest.json")
    assert registry.get_alias("production") is None
    registry.set_alias("production", 1)
    assert registry.get_alias("production").version == 1
    assert "production" in registry.get_version(1).aliases
    registry.set_tag(1, "release_state", "qa")
    assert registry.get_version(1).release_state == "qa"
