"""deploy/dagster/dagster.yaml, the instance a team runs, against a real PostgreSQL: the retraining
job's runs and events land in Postgres (compute logs local here: Blob Storage is for AKS)."""

import psycopg2
import pytest
import yaml

from mlops_assets.core.instance import INSTANCE_CONFIG
from mlops_assets.ingest.seed import seed
from mlops_assets.ops.runner import ingest_new_files, retrain
from mlops_assets_tests.conftest import REPO
from mlops_assets_tests.projects import DIABETES

TEAM_INSTANCE = REPO / "deploy" / "dagster" / "dagster.yaml"


@pytest.fixture(scope="module")
def postgres():
    from mlops_assets_tests import postgres as server

    root, running = server.start()
    yield running
    server.stop(root)


def test_runs_and_events_of_the_retraining_job_land_in_postgres(settings, storage, postgres, monkeypatch):
    import dagster as dg

    from mlops_assets.definitions import build_definitions

    config = yaml.safe_load(TEAM_INSTANCE.read_text())
    config["compute_logs"] = {
        "module": "dagster._core.storage.local_compute_log_manager",
        "class": "LocalComputeLogManager",
        "config": {"base_dir": str(settings.home_dir / "compute-logs")},
    }
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    (settings.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    for name, value in postgres.env.items():
        monkeypatch.setenv(name, value)

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        defs = build_definitions(settings)
        seed(storage, DIABETES)
        assert [o.success for o in ingest_new_files(defs, instance, storage, settings.lock_dir)] == [True]
        outcome = retrain(defs, instance, settings.lock_dir)
        assert outcome.success and outcome.registered["version"] == 1

    with (
        psycopg2.connect(
            host="127.0.0.1",
            port=postgres.port,
            user=postgres.user,
            password=postgres.password,
            dbname=postgres.database,
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT pipeline_name, status FROM runs ORDER BY create_timestamp")
        assert cursor.fetchall() == [("ingest_job", "SUCCESS"), ("retraining_job", "SUCCESS")]
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (outcome.run_id,),
        )
        assert cursor.fetchone()[0] == 4  # training_data, candidate_model, model_evaluation, registered_model
        cursor.execute("SELECT asset_key FROM asset_keys")
        keys = {row[0] for row in cursor.fetchall()}
        assert {'["candidate_model"]', '["registered_model"]', '["validated_batch"]'} <= keys
    assert (settings.home_dir / "compute-logs").is_dir()  # step logs captured beside, not in Postgres


def test_the_team_instance_limits_runs_like_the_local_one():
    """One training and one release run at a time, on AKS as on a laptop; telemetry off in both."""
    team = yaml.safe_load(TEAM_INSTANCE.read_text())
    local_limits = INSTANCE_CONFIG["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert all(limit in team["run_coordinator"]["config"]["tag_concurrency_limits"] for limit in local_limits)
    assert team["telemetry"] == {"enabled": False}
    assert team["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert team["compute_logs"]["class"] == "AzureBlobComputeLogManager"
    assert team["run_monitoring"]["enabled"] is True
