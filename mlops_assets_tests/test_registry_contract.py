"""One registry contract, two backends: MLflow on a real SQLite store, Azure ML on a recording client.

Then what only the AML backend has to add: the entities it sends, aliases as tags, and an
alias move interrupted half way that is still read right and gets repaired.
"""

import hashlib
import json

import pytest

from mlops_assets.registry.aml_backend import ALIAS_PREFIX, MANIFEST_TAG, AzureMLRegistry
from mlops_assets.registry.mlflow_backend import MlflowRegistry
from mlops_assets_tests.cloud_recorders import LocalAmlWorkspace


@pytest.fixture
def aml(tmp_path) -> LocalAmlWorkspace:
    return LocalAmlWorkspace(tmp_path / "aml", job_secrets={})


@pytest.fixture(params=["mlflow", "azureml"])
def registry(request, tmp_path, aml):
    if request.param == "mlflow":
        return MlflowRegistry(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifact_root=(tmp_path / "artifacts").as_uri(),
            model_name="test-model",
        )
    return AzureMLRegistry(aml, "test-model")


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
    assert registry.read_file(2, "model.skops") == b"model-b"
    assert registry.find_by_fingerprint("fp-b").version == 2
    assert registry.find_by_fingerprint("nope") is None
    assert registry.get_version(2).tags["artifact_sha256"] == hashlib.sha256(b"model-b").hexdigest()


def test_manifest_aliases_and_tags(registry):
    registry.register(b"m", "model.skops", tags("fp", b"m"), {"mse": 1.0})
    registry.register(b"n", "model.skops", tags("fp2", b"n"), {"mse": 0.9})
    registry.write_manifest(1, {"version": 1, "sha256": "x"})
    assert json.loads(registry.read_file(1, "manifest.json")) == {"version": 1, "sha256": "x"}
    assert registry.get_alias("production") is None
    registry.set_alias("production", 1)
    assert registry.get_alias("production").version == 1
    assert "production" in registry.get_version(1).aliases
    registry.set_alias("production", 2)  # a move: one holder only
    assert registry.get_alias("production").version == 2
    assert [v.aliases for v in registry.list_versions()] == [(), ("production",)]
    registry.set_alias("production", 1)  # and back (a rollback)
    assert registry.get_alias("production").version == 1
    registry.set_alias("qa", 2)
    registry.remove_alias("qa")  # QA torn down: no version is "in QA"
    registry.remove_alias("qa")  # again: nothing to do
    assert registry.get_alias("qa") is None
    assert [v.aliases for v in registry.list_versions()] == [("production",), ()]
    registry.set_tag(1, "release_state", "qa")
    assert registry.get_version(1).release_state == "qa"
    assert registry.get_version(1).tags["fingerprint"] == "fp"  # other tags kept


# --- AML only -----------------------------------------------------------------------------


def test_aml_versions_are_custom_models_with_tags_and_metrics_as_properties(aml):
    registry = AzureMLRegistry(aml, "test-model")
    registry.register(b"m", "model.skops", tags("fp", b"m"), {"mse": 1.25, "r2": 0.5})
    (sent,), _ = aml.recorder.last("models.create_or_update")
    assert sent["name"] == "test-model"
    assert sent["version"] == "1"
    assert sent["type"] == "custom_model"
    assert sent["tags"] == tags("fp", b"m")
    assert sent["properties"] == {"mse": "1.25", "r2": "0.5"}
    registry.set_alias("production", 1)
    registry.write_manifest(1, {"version": 1})
    (sent,), _ = aml.recorder.last("models.create_or_update")
    assert sent["tags"][MANIFEST_TAG] == '{"version": 1}'
    assert sent["tags"][ALIAS_PREFIX + "production"].isdigit()
    # The protocol's tags hide the mapping: what MLflow users see, AML users see.
    assert registry.get_version(1).tags == tags("fp", b"m")


def test_an_interrupted_alias_move_reads_as_done_is_detected_and_repaired(aml, caplog):
    registry = AzureMLRegistry(aml, "test-model")
    for n in (1, 2):
        registry.register(f"m{n}".encode(), "model.skops", tags(f"fp{n}", b"m"), {"mse": 1.0})
    registry.set_alias("production", 1)
    assert registry.interrupted_alias_moves() == {}

    aml.models.fail_updates_after = 1  # v2 gets the tag, removing it from v1 fails
    with pytest.raises(Exception, match="connection lost"):
        registry.set_alias("production", 2)
    assert registry.interrupted_alias_moves() == {"production": [1]}
    assert registry.get_alias("production").version == 2  # the move meant v2
    assert "move was interrupted: v1 still tagged" in caplog.text
    assert [v.aliases for v in registry.list_versions()] == [(), ("production",)]

    assert registry.repair_aliases() == {"production": [1]}
    assert registry.interrupted_alias_moves() == {}
    assert ALIAS_PREFIX + "production" not in aml.models.get("test-model", "1").tags
    assert registry.get_alias("production").version == 2


def test_the_version_index_follows_every_change_made_through_the_registry(registry, tmp_path):
    from mlops_assets.registry.index import IndexedRegistry, VersionIndex
    from mlops_assets.storage.fsstore import Storage

    index = VersionIndex(Storage((tmp_path / "storage").as_uri()), registry.model_name)
    models = IndexedRegistry(registry, index)
    judged = {"primary_metric": "mse", "holdout_hash": "aaaaaaaa11", "release_state": "registered"}
    models.register(b"m", "model.skops", tags("fp", b"m") | judged, {"mse": 1.5})
    from mlops_assets.registry.compiled import COMPILED_TAG, compiled_tag

    graph = {"format": "onnx", "inputs": "columns", "numbers": "float32", "sha256": "ab" * 32}
    models.register(
        b"n",
        "model.skops",
        tags("fp2", b"n") | judged | {"holdout_hash": "bbbbbbbb22", COMPILED_TAG: compiled_tag(graph)},
        {"mse": 1.2},
        {"model.onnx": b"the graph"},
    )
    assert registry.read_file(2, "model.onnx") == b"the graph"  # beside the artifact, in either registry
    index.record_evaluation("bbbbbbbb22", "mse", {1: 1.61234})
    models.set_alias("production", 1)
    models.set_alias("qa", 2)
    models.set_tag(2, "release_state", "qa")
    versions, current = index.read()
    assert current == "bbbbbbbb22"
    assert [v.line(registry.model_name, current) for v in versions] == [
        "test-model v1 [production]: mse 1.5 on holdout aaaaaaaa, 1.612 on the current bbbbbbbb; registered; "
        "served as fitted: registered before models were compiled",
        "test-model v2 [qa]: mse 1.5 on holdout bbbbbbbb (the current one); qa; compiled (onnx, columns of float32)",
    ]
    models.remove_alias("qa")  # QA torn down
    assert [v.aliases for v in index.read()[0]] == [("production",), ()]
    index.record_evaluation("cccccccc33", "mse", {2: 1.3})  # a new holdout: older figures no longer hold
    assert [v.current for v in index.read()[0]] == [None, 1.3]
