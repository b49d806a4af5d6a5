"""The code location as the UI and the daemon see it."""

import dagster as dg

from mlops_assets.automation import LANDING_SENSOR
from mlops_assets.data.assets import landed_files
from mlops_assets.instance import STAGE_TAG


def test_every_asset_links_to_its_source_code(defs):
    for spec in defs.resolve_all_asset_specs():
        references = spec.metadata.get("dagster/code_references")
        assert references is not None, spec.key
        (reference,) = references.code_references
        assert reference.file_path.endswith(".py") and reference.line_number > 0


def test_checks_on_landed_batch_are_partitioned_and_blocking_where_they_must_be(defs):
    graph = defs.resolve_asset_graph()
    checks = {
        key.name: graph.get_check_spec(key)
        for key in graph.asset_check_keys
        if key.asset_key.path == ["landed_batch"]
    }
    assert set(checks) == {"parse", "schema", "nulls", "ranges", "distribution_limit", "drift"}
    for name, spec in checks.items():
        assert spec.partitions_def == landed_files, name
        assert spec.blocking == (name != "drift"), name


def test_jobs_carry_the_stage_tags_the_run_queue_limits(defs):
    assert defs.resolve_job_def("retraining_job").tags[STAGE_TAG] == "training"
    assert defs.resolve_job_def("ingest_job").tags[STAGE_TAG] == "ingest"
    assert defs.resolve_job_def("ingest_job").partitions_def == landed_files


def test_local_profile_runs_in_process_with_sensors_running(defs):
    job = defs.resolve_job_def("retraining_job")
    assert job.executor_def.name == dg.in_process_executor.name
    assert defs.resolve_sensor_def(LANDING_SENSOR).default_status == dg.DefaultSensorStatus.RUNNING


def test_retraining_job_is_the_unpartitioned_chain(defs):
    keys = {
        k.to_user_string() for k in defs.resolve_job_def("retraining_job").asset_layer.executable_asset_keys
    }
    assert keys == {"training_data", "candidate_model", "model_evaluation", "registered_model"}


def test_release_checks_report_the_smoke_test(defs):
    graph = defs.resolve_asset_graph()
    smoke = [key for key in graph.asset_check_keys if key.name == "smoke_test"]
    assert sorted(key.asset_key.to_user_string() for key in smoke) == ["prod_deployment", "qa_deployment"]
