"""File names no run can take are skipped with a reason; `land` cannot write outside landing/."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from mlops_assets.core.partition_names import MAX_NAME_BYTES, unusable_name
from mlops_assets.ingest.automation import LANDING_SENSOR, plan_landing
from mlops_assets_tests import data_files
from mlops_assets_tests.conftest import subprocess_env

BAD_NAMES = {
    "a...b.csv": "contains '...'",
    "tab\there.csv": "a tab or a newline",
    "x" * (MAX_NAME_BYTES + 1) + ".csv": f"name longer than {MAX_NAME_BYTES} bytes",
}


def test_names_dagster_cannot_take_are_skipped_with_a_warning_and_the_rest_still_run(
    settings, storage, instance, defs
):
    good = data_files.csv_bytes(data_files.held_back())
    storage.write_bytes("landing/fine.csv", good)
    for name in BAD_NAMES:
        storage.write_bytes(f"landing/{name}", good)
    plan = plan_landing(storage, instance)
    assert [r.partition_key for r in plan.run_requests] == ["fine.csv"]
    assert len(plan.skipped) == len(BAD_NAMES)
    for name, reason in BAD_NAMES.items():
        (said,) = [s for s in plan.skipped if s.startswith(f"landing/{name}: skipped")]
        assert reason in said and said.endswith("rename it")

    # The sensor's tick succeeds: the good file becomes a partition and a run request.
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        result = sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["fine.csv"]


def test_land_refuses_a_name_outside_landing_or_one_no_run_could_take(settings, tmp_path):
    source = tmp_path / "batch.csv"
    source.write_bytes(data_files.csv_bytes(data_files.held_back()))
    cli = str(Path(sys.executable).parent / "mlops-assets")
    env = subprocess_env(settings.home_dir)
    for name in ("../escaped.csv", "/tmp/absolute.csv", "a/../../b.csv", "a...b.csv"):
        result = subprocess.run(
            [cli, "land", str(source), "--name", name], env=env, capture_output=True, text=True
        )
        assert result.returncode == 2, name
        assert f"landing/{name}: refused, {unusable_name(name)}" in result.stderr
    stored = settings.home_dir / "storage"
    assert not (stored / "escaped.csv").exists() and not (settings.home_dir / "escaped.csv").exists()
    assert not list(stored.rglob("*.csv"))
    landed = subprocess.run(
        [cli, "land", str(source), "--name", "ok.csv"], env=env, capture_output=True, text=True
    )
    assert landed.returncode == 0 and (stored / "landing" / "ok.csv").is_file()


def test_a_file_still_being_written_under_its_final_name_waits_until_it_settles(
    settings, storage, instance, monkeypatch
):
    """A copy in progress: the sensor sees a half-written file under its final name. It is taken
    only once unchanged for MLOPS_LANDING_SETTLE_SECONDS, and then as it is complete."""
    import os
    import time

    from mlops_assets.definitions import build_definitions
    from mlops_assets.settings import get_settings

    monkeypatch.setenv("MLOPS_LANDING_SETTLE_SECONDS", "30")
    get_settings.cache_clear()
    defs = build_definitions(get_settings())
    whole = data_files.csv_bytes(data_files.held_back())
    storage.write_bytes("landing/copying.csv", whole[: len(whole) // 2])  # the copy so far
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        assert sensor(context).run_requests == []
    assert plan_landing(storage, instance, settle_seconds=30).settling == ["landing/copying.csv"]

    storage.write_bytes("landing/copying.csv", whole)  # the copy finishes, then nothing changes
    settled = time.time() - 31
    os.utime(
        Path(settings.storage_root.removeprefix("file://")) / "landing" / "copying.csv", (settled, settled)
    )
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        (request,) = sensor(context).run_requests
    assert request.partition_key == "copying.csv"
    assert request.run_key == f"copying.csv@{next(storage.list_files('landing')).version}"  # the whole file's
    get_settings.cache_clear()


def test_storage_refuses_a_path_that_climbs_out_wherever_it_comes_from(
    settings, storage, instance, defs, tmp_path
):
    """A partition added by hand (the UI's "add partition") named ``../...``: the run fails naming
    it, and nothing outside the storage root is read or written."""
    import pytest

    from mlops_assets.ingest.assets import landed_files
    from mlops_assets.ops.runner import execute, failure_messages
    from mlops_assets.storage.fsstore import StoragePathError

    for path in ("landing/../../outside.csv", "../outside.csv", "landing/..\\..\\outside.csv"):
        with pytest.raises(StoragePathError, match=r"may not contain '\.\.'"):
            storage.write_bytes(path, b"x")
        with pytest.raises(StoragePathError):
            storage.read_bytes(path)
    beside = Path(settings.storage_root.removeprefix("file://")).parent
    (beside / "outside.csv").write_bytes(data_files.csv_bytes(data_files.held_back()))  # bait

    instance.add_dynamic_partitions(landed_files.name, ["../outside.csv"])
    result = execute(defs, instance, "ingest_job", settings.lock_dir, partition_key="../outside.csv")
    assert not result.success
    assert any(
        "'landing/../outside.csv': a storage path may not contain '..'" in m for m in failure_messages(result)
    )
    assert not list(Path(beside).glob("validated*")) and not any(
        "outside" in str(p) for p in Path(storage.fs_path("")).rglob("*")
    )
