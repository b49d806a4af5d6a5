"""Retraining after ingest, debounced; the schedules. Real instance, real ingest runs."""

import dagster as dg

from mlops_assets.ingest.seed import seed
from mlops_assets.ops.runner import ingest_new_files
from mlops_assets.training.automation import RETRAIN_SENSOR, plan_retrain
from mlops_assets_tests import data_files
from mlops_assets_tests.projects import DIABETES


def _tick(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def(RETRAIN_SENSOR)
    with dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor) as context:
        return sensor(context)


def test_a_burst_of_valid_files_gives_one_retrain_and_a_bad_one_none(settings, storage, instance, defs):
    seed(storage, DIABETES)
    frame = data_files.held_back()
    storage.write_bytes("landing/extra-a.csv", data_files.csv_bytes(frame.iloc[:50]))
    storage.write_bytes("landing/extra-b.csv", data_files.csv_bytes(frame.iloc[50:]))
    storage.write_bytes("landing/broken.csv", data_files.missing_column())

    # An ingest run still queued holds the retrain back: the burst is not over.
    pending = instance.create_run_for_job(defs.resolve_job_def("ingest_job"), run_config={})
    outcomes = ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert sorted(o.success for o in outcomes) == [False, True, True, True]
    waiting = _tick(defs, instance)
    assert (
        isinstance(waiting, dg.SkipReason)
        and "3 new batch(es); waiting for ingest runs" in waiting.skip_message
    )
    instance.delete_run(pending.run_id)

    result = _tick(defs, instance)
    (request,) = result.run_requests  # three validated batches, one retrain
    assert request.run_key.startswith("retrain-after-") and request.tags["mlops/trigger"] == "new-data"
    assert defs.resolve_job_def("retraining_job").name == "retraining_job"

    # Nothing new: the next tick skips. A bad file alone starts nothing either.
    assert isinstance(_tick(defs, instance, result.cursor), dg.SkipReason)
    storage.write_bytes("landing/broken-again.csv", data_files.nulls())
    (bad,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert not bad.success
    skipped = _tick(defs, instance, result.cursor)
    assert isinstance(skipped, dg.SkipReason) and "no batch validated" in skipped.skip_message
    assert plan_retrain(instance, int(result.cursor)).run_key is None


def test_the_weekly_retrain_schedule_and_every_sensor_run_by_default_locally(defs):
    schedule = defs.resolve_schedule_def("retraining_schedule")
    assert schedule.cron_schedule == "0 3 * * 1" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == "retraining_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors)


def test_the_retrain_cron_comes_from_settings(settings, monkeypatch):
    from mlops_assets.definitions import build_definitions
    from mlops_assets.settings import get_settings

    monkeypatch.setenv("MLOPS_RETRAIN_CRON", "30 1 * * *")
    get_settings.cache_clear()
    assert (
        build_definitions(get_settings()).resolve_schedule_def("retraining_schedule").cron_schedule
        == "30 1 * * *"
    )
    get_settings.cache_clear()


def test_a_local_file_s_version_is_its_content_hashed_once_per_change(storage, monkeypatch):
    """Sensors list every tick: the hash is kept while size and mtime stand, redone when they move."""
    import os

    from mlops_assets.storage import fsstore

    storage.write_bytes("landing/a.csv", b"age\n1\n")
    (first,) = storage.list_files("landing")
    reads: list[str] = []
    real_open = storage.fs.open
    monkeypatch.setattr(
        storage.fs, "open", lambda path, *a, **k: reads.append(path) or real_open(path, *a, **k)
    )
    assert [f.version for f in storage.list_files("landing")] == [first.version]
    assert reads == []  # nothing read again
    full = storage.fs_path("landing/a.csv")
    with open(full, "wb") as handle:
        handle.write(b"age\n2\n")  # same size, other bytes
    os.utime(full, ns=(os.stat(full).st_atime_ns, os.stat(full).st_mtime_ns + 1_000_000))
    (changed,) = storage.list_files("landing")
    assert changed.version != first.version and len(reads) == 1
    with open(full, "wb") as handle:
        handle.write(b"age\n1\n")  # the first bytes again, at a new time: the first version
    os.utime(full, ns=(os.stat(full).st_atime_ns, os.stat(full).st_mtime_ns + 2_000_000))
    assert [f.version for f in storage.list_files("landing")] == [first.version]
    assert fsstore._CONTENT_HASHES  # kept in the process that runs the sensors
