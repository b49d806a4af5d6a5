"""Runs of a serial stage never interleave, whoever starts them: the CLI, the daemon or the UI.

Real processes on a real instance: a `dagster asset materialize` run (as the daemon's run worker or
the UI's asset graph launches one: its own process, no job tags) waits for the release lock a CLI
holds; and the instance's run coordinator tags an asset-graph run with its assets' stage.
"""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.core.keys import PROD_DEPLOYMENT, SCORING_IMAGE, TRAINING_DATA
from mlops_assets.release.assets import model_versions
from mlops_assets_tests.conftest import REPO, subprocess_env
from mlops_assets_tests.dagster_dev import wait_for
from mlops_assets_tests.release_support import register

BIN = Path(sys.executable).parent
# Holds the release lock as `mlops-assets promote` does around its decision and run, until told to
# let go; then says when it did.
HOLDER = """
import sys, time
from pathlib import Path
from mlops_assets.core.stage_lock import hold_stage
with hold_stage(Path(sys.argv[1]), "release", "mlops-assets promote 1"):
    print("held", flush=True)
    sys.stdin.readline()
    released = time.time()
print(released, flush=True)
"""


def _event_times(instance: dg.DagsterInstance, run_id: str, kind: str) -> list[float]:
    return [
        e.timestamp
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.event_type_value == kind
    ]


@pytest.mark.slow
def test_a_run_from_another_process_waits_for_the_release_lock_a_cli_holds(settings, instance, defs):
    version = register(defs, 0.5)
    instance.add_dynamic_partitions(model_versions.name, [str(version)])
    env = subprocess_env(settings.home_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(settings.lock_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout.readline().strip() == "held"
    command = [
        "asset",
        "materialize",
        "-m",
        "mlops_assets.definitions",
        "--select",
        SCORING_IMAGE.to_user_string(),
    ]
    run = subprocess.Popen(
        [str(BIN / "dagster"), *command, "--partition", str(version)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        waiting = wait_for(
            "the other process's run to wait for the release stage",
            lambda: [
                (record.dagster_run.run_id, event.user_message)
                for record in instance.get_run_records(dg.RunsFilter(job_name="__ASSET_JOB"))
                for event in instance.all_logs(record.dagster_run.run_id)
                if "waiting for the release stage" in event.user_message
            ],
            180,
        )
    finally:
        holder.stdin.write("go\n")
        holder.stdin.flush()
    released = float(holder.stdout.readline())
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output[-3000:]
    ((run_id, message),) = waiting
    assert "held by mlops-assets promote 1" in message
    (step_start,) = _event_times(instance, run_id, "STEP_START")
    assert step_start >= released  # its step began only once the CLI let go of the stage
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS


def test_the_run_coordinator_gives_an_asset_graph_run_its_assets_stage(settings, instance, defs):
    """What the webserver does when someone materialises assets picked in the graph."""
    assert type(instance.run_coordinator).__name__ == "StageTaggingRunCoordinator"
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    job = defs.resolve_implicit_global_asset_job_def()
    # Where the webserver says a run's job comes from (the queue needs it; nothing is loaded from it).
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="mlops_assets.definitions"))
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job.name)
    for selection, stage in [
        ({PROD_DEPLOYMENT}, "release"),
        ({TRAINING_DATA}, "training"),
        ({TRAINING_DATA, PROD_DEPLOYMENT}, "release"),  # spans stages: the most serial one
    ]:
        run = instance.create_run_for_job(job, asset_selection=frozenset(selection), remote_job_origin=origin)
        assert STAGE_TAG not in run.tags
        queued = instance.run_coordinator.submit_run(dg.SubmitRunContext(run, workspace=None))
        assert queued.status == dg.DagsterRunStatus.QUEUED
        assert instance.get_run_by_id(run.run_id).tags[STAGE_TAG] == stage


def test_every_asset_s_stage_is_the_stage_of_the_jobs_that_run_it(defs):
    from mlops_assets.core.keys import STAGE_OF

    assert set(STAGE_OF) == set(defs.resolve_asset_graph().get_all_asset_keys())
    covered = set()
    for job in defs.resolve_all_job_defs():
        stage = job.tags.get(STAGE_TAG)
        for key in job.asset_layer.executable_asset_keys if stage else ():
            assert STAGE_OF[key] == stage, (job.name, key)
            covered.add(key)
    assert covered == set(STAGE_OF)


def test_a_stage_held_past_the_wait_fails_naming_its_holder(settings):
    from mlops_assets.core.stage_lock import StageBusy, hold_stage

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(settings.lock_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(settings.home_dir),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        heard = []
        with (
            pytest.raises(
                StageBusy,
                match=rf"the release stage is still held by mlops-assets promote 1 \(pid {holder.pid}, since ",
            ),
            hold_stage(settings.lock_dir, "release", "a run", heard.append, timeout=0.5),
        ):
            pass
        assert heard == [heard[0]] and heard[0].startswith(f"mlops-assets promote 1 (pid {holder.pid}")
    finally:
        holder.communicate("\n", timeout=30)
    with hold_stage(settings.lock_dir, "release", "a run", timeout=0.5):  # let go: taken at once
        pass
