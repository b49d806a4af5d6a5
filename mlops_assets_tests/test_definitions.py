"""The code location as the UI and the daemon see it."""

import dagster as dg

from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.ingest.assets import landed_files
from mlops_assets.ingest.automation import LANDING_SENSOR


def test_every_asset_links_to_its_source_code(defs):
    for spec in defs.resolve_all_asset_specs():
        references = spec.metadata.get("dagster/code_references")
        assert references is not None, spec.key
        (reference,) = references.code_references
        assert reference.file_path.endswith(".py") and reference.line_number > 0


def test_checks_on_landed_batch_are_partitioned_and_errors_where_they_must_be(defs):
    """A blocking rule is an ERROR that validated_batch's gate enforces (its failure names the rows),
    not Dagster's blocking flag (whose run failure would name only the checks)."""
    graph = defs.resolve_asset_graph()
    checks = {
        key.name: graph.get_check_spec(key)
        for key in graph.asset_check_keys
        if key.asset_key.path == ["landed_batch"]
    }
    assert set(checks) == {"parse", "schema", "nulls", "ranges", "distribution_limit", "drift"}
    for name, spec in checks.items():
        assert spec.partitions_def == landed_files, name
        assert not spec.blocking, name


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


def _names(defs: dg.Definitions) -> dict[str, set[str]]:
    """What a Definitions object holds, by kind, as the UI and the daemon name it."""
    repository = defs.get_repository_def()
    graph = repository.asset_graph
    return {
        "assets": {key.to_user_string() for key in graph.materializable_asset_keys},
        "checks": {f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys},
        "jobs": {job.name for job in repository.get_all_jobs() if not job.name.startswith("__")},
        "sensors": {sensor.name for sensor in repository.sensor_defs},
        "schedules": {schedule.name for schedule in repository.schedule_defs},
    }


def _own_names(defs: dg.Definitions) -> dict[str, set[str]]:
    """A domain's own definitions (its asset graph also lists the other domains' assets it reads)."""
    return {
        "assets": {key.to_user_string() for a in defs.assets or [] for key in a.keys},
        "checks": {
            f"{key.asset_key.to_user_string()}:{key.name}"
            for item in [*(defs.assets or []), *(defs.asset_checks or [])]
            for key in item.check_keys
        },
        "jobs": {job.name for job in defs.jobs or []},
        "sensors": {sensor.name for sensor in defs.sensors or []},
        "schedules": {schedule.name for schedule in defs.schedules or []},
    }


def test_every_domain_s_whole_definitions_reach_the_code_location(settings, defs):
    from mlops_assets.definitions import DOMAINS

    merged = _names(defs)
    union: dict[str, set[str]] = {kind: set() for kind in merged}
    for domain, build in DOMAINS.items():
        own = _own_names(build(settings))
        assert own["assets"], domain
        for kind, names in own.items():
            assert names <= merged[kind], (domain, kind, names - merged[kind])
            union[kind] |= names
    assert union == merged  # nothing in the code location that no domain declared


def test_a_sensor_a_domain_adds_is_served_without_touching_definitions_py(settings, monkeypatch):
    from mlops_assets import definitions

    @dg.sensor(job_name="ingest_job", name="added_by_the_ingest_domain")
    def added(_context):
        return dg.SkipReason("a test")

    original = definitions.DOMAINS["ingest"]
    monkeypatch.setitem(
        definitions.DOMAINS,
        "ingest",
        lambda s: dg.Definitions.merge(original(s), dg.Definitions(sensors=[added])),
    )
    assert "added_by_the_ingest_domain" in _names(definitions.build_definitions(settings))["sensors"]


# The names the instance keys on: cursors, run keys, partitions and run history refer to these.
NAMES_THE_INSTANCE_KNOWS = {
    "assets": {
        "landed_batch",
        "validated_batch",
        "feedback_batch",
        "training_data",
        "candidate_model",
        "model_evaluation",
        "registered_model",
        "scoring_image",
        "qa_deployment",
        "prod_deployment",
        "scoring_logs",
        "drift_report",
        "batch_predictions",
    },
    "checks": {
        *(
            f"landed_batch:{name}"
            for name in ("parse", "schema", "nulls", "ranges", "distribution_limit", "drift")
        ),
        "qa_deployment:smoke_test",
        "prod_deployment:smoke_test",
        "drift_report:drift_within_limits",
        "batch_predictions:every_row_scored",
    },
    "jobs": {
        "ingest_job",
        "feedback_job",
        "retraining_job",
        "release_job",
        "monitoring_job",
        "batch_scoring_job",
    },
    "sensors": {
        "landing_sensor",
        "feedback_sensor",
        "retrain_after_ingest_sensor",
        "release_sensor",
        "production_health_sensor",
        "scoring_logs_sensor",
        "drift_retrain_sensor",
        "alert_on_run_failure",
        "scoring_input_sensor",
    },
    "schedules": {"retraining_schedule", "monitoring_schedule"},
}


def test_the_names_the_instance_keys_on_are_unchanged(defs):
    assert _names(defs) == NAMES_THE_INSTANCE_KNOWS


def test_core_keys_name_exactly_the_code_location_s_assets(defs):
    from mlops_assets.core import keys

    declared = {value for value in vars(keys).values() if isinstance(value, dg.AssetKey)}
    assert declared == set(defs.resolve_asset_graph().materializable_asset_keys)


def test_automation_starts_stopped_outside_the_local_profile(settings):
    from mlops_assets.core.automation import schedule_status, sensor_status

    team = settings.model_copy(update={"profile": "azure"})
    assert sensor_status(team) == dg.DefaultSensorStatus.STOPPED
    assert schedule_status(team) == dg.DefaultScheduleStatus.STOPPED
    assert sensor_status(settings) == dg.DefaultSensorStatus.RUNNING


def test_the_ui_says_which_project_it_shows(settings, monkeypatch):
    """The code location (of `mlops-assets ui`) and every group are named by the model project, and
    the gate's description names the project's own metric (not the diabetes project's mse)."""
    import yaml

    from mlops_assets.core import keys
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ops.ui import project_workspace
    from mlops_assets.project.locate import MODELS_DIR
    from mlops_assets.settings import get_settings

    monkeypatch.setenv("MLOPS_MODEL_PROJECT", str(MODELS_DIR / "churn"))
    get_settings.cache_clear()
    churn = get_settings()
    churn.dagster_home.mkdir(parents=True, exist_ok=True)
    (location,) = yaml.safe_load(project_workspace(churn).read_text())["load_from"]
    assert location["python_module"]["location_name"] == "churn"
    assert location["python_module"]["module_name"] == "mlops_assets.definitions"

    graph = build_definitions(churn).resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        f"churn_{stage}"
        for stage in ("ingest", "feedback", "training", "registry", "release", "monitoring", "batch")
    }
    gate = graph.get(keys.MODEL_EVALUATION).description
    assert "its roc_auc (higher is better) improves on the bar's by more than" in gate and "mse" not in gate


def test_the_confusion_matrix_names_classes_as_the_service_does():
    import numpy as np

    from mlops_assets.registry.plots import holdout_figure

    figure = holdout_figure("binary", np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, 0.0]), "t", "boolean")
    axis = figure.axes[0]
    assert [label.get_text() for label in axis.get_xticklabels()] == ["false", "true"]
    assert [label.get_text() for label in axis.get_yticklabels()] == ["false", "true"]
