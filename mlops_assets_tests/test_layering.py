"""The layering contract (mlops_assets_tests/import_contract.py) holds, and a new breach fails it."""

import shutil
from pathlib import Path

import pytest

from mlops_assets_tests.import_contract import check_package

PACKAGE = Path(__file__).resolve().parents[1] / "mlops_assets"


def test_the_package_keeps_its_layering():
    assert [str(v) for v in check_package(PACKAGE)] == []


BREACHES = {
    "core imports azure inside a function": (
        "core/storage.py",
        "\n\ndef _late():\n    from mlops_assets.azure.jobs import AzureMLJobs\n\n    return AzureMLJobs\n",
        "mlops_assets.core.storage",
        "imports mlops_assets.azure.jobs from a higher layer",
    ),
    "a domain imports one above it": (
        "ingest/validation.py",
        "\nfrom mlops_assets.registry import protocol  # noqa\n",
        "mlops_assets.ingest.validation",
        "imports mlops_assets.registry.protocol from a higher layer",
    ),
    "the code location imports an operator script": (
        "release/assets.py",
        "\nimport mlops_assets.ops.runner  # noqa\n",
        "mlops_assets.release.assets",
        "imports mlops_assets.ops.runner from a higher layer",
    ),
    "monitoring imports batch": (
        "monitoring/drift.py",
        "\nfrom mlops_assets.batch import scoring  # noqa\n",
        "mlops_assets.monitoring.drift",
        "are independent",
    ),
    "the service imports dagster lazily": (
        "serving/keys.py",
        "\n\ndef _late():\n    import dagster\n\n    return dagster\n",
        "mlops_assets.serving.keys",
        "imports dagster: the service never loads it",
    ),
    "core/__init__ imports something": (
        "core/__init__.py",
        "from mlops_assets.storage import fsstore  # noqa\n",
        "mlops_assets.core",
        "must import nothing",
    ),
    "another domain's asset named by a string": (
        "batch/assets.py",
        '\nimport dagster as dg\n\nLATE = dg.AssetKey("registered_model")\n',
        "mlops_assets.batch.assets",
        "names an asset by a string",
    ),
    "a module in no layer": (
        "helpers.py",
        "",
        "mlops_assets.helpers",
        "in no layer",
    ),
}


@pytest.mark.parametrize("breach", BREACHES, ids=list(BREACHES))
def test_a_new_breach_fails_the_contract(tmp_path, breach):
    relative, addition, module, rule = BREACHES[breach]
    copy = tmp_path / "mlops_assets"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / relative
    target.write_text((target.read_text() if target.exists() else "") + addition)
    found = [v for v in check_package(copy)]
    assert [(v.module, rule in v.rule) for v in found] == [(module, True)], found
