"""The Dagster UI as a person uses it: headless Chromium on `dagster dev`, then the daemon on its own.

Chromium is Debian's (`apt-get install chromium`, done by .ci/run), driven by Playwright for
Python with ``executable_path``; `playwright install` is never run. The screenshot is kept under
test-artifacts/ui/.
"""

import subprocess
from pathlib import Path

import pytest

from mlops_assets_tests import dagster_dev
from mlops_assets_tests.conftest import REPO, subprocess_env
from mlops_assets_tests.dagster_dev import runs, wait_for
from mlops_assets_tests.projects import DIABETES
from mlops_assets_tests.serving_support import BIN, free_port

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# Flags for a sandbox with no network: without the background-networking ones Chromium keeps
# trying to reach Google's hosts.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LINEAGE = {
    "ingest": ["landed_batch", "validated_batch"],
    "training": ["training_data", "candidate_model"],
    "registry": ["model_evaluation", "registered_model"],
    "release": ["scoring_image", "qa_deployment", "prod_deployment"],
    "monitoring": ["scoring_logs", "drift_report"],
    "feedback": ["feedback_batch"],
    "batch": ["batch_predictions"],
}
ARTIFACTS = REPO / "test-artifacts" / "ui"


def test_lineage_a_retrain_from_the_page_then_the_daemon_runs_the_loop_alone(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `apt-get install -y chromium` (.ci/run does)"
    home = tmp_path / "mlops"
    env = subprocess_env(home) | {
        "MLOPS_SENSOR_INTERVAL_SECONDS": "5",
        "MLOPS_PRODUCTION_PORT": str(free_port()),
        "MLOPS_QA_PORT": str(free_port()),
    }
    for command in (["seed"], ["instance"]):
        subprocess.run([str(BIN / "mlops-assets"), *command], env=env, check=True, capture_output=True)
    port = free_port()
    server = dagster_dev.start(env, port, tmp_path / "dagster-dev.log")
    url = f"http://127.0.0.1:{port}"
    try:
        dagster_dev.wait_for_asset_graph(server, port)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)  # not logged in: the UI sends the browser to its login page
            page.wait_for_url("**/mlops/login", timeout=60_000)
            page.get_by_label("UI token").fill(dagster_dev.token(port))
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(lambda address: "/mlops/login" not in address, timeout=60_000)
            for group, assets in LINEAGE.items():
                # The code location and its groups are named after the model project.
                page.goto(f"{url}/locations/diabetes/asset-groups/diabetes_{group}")
                for asset in assets:
                    expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=60_000)

            # The daemon ingests the seeded file by itself (landing_sensor); then a person retrains.
            wait_for(
                "landing_sensor's ingest run",
                lambda: [r for r in runs(port) if r["jobName"] == "ingest_job" and r["status"] == "SUCCESS"],
            )
            page.goto(f"{url}/locations/diabetes/jobs/retraining_job/playground")
            page.get_by_role("button", name="Launch Run").click()
            page.wait_for_url("**/runs/**", timeout=60_000)
            run_id = page.url.split("/runs/")[1].split("?")[0].strip("/")
            wait_for(
                "the retraining run launched from the page",
                lambda: any(r["runId"] == run_id and r["status"] == "SUCCESS" for r in runs(port)),
            )
            page.reload()
            expect(page.get_by_text("Success").first).to_be_visible(timeout=60_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "retraining_job_run.png"), full_page=True)
            browser.close()

        # A new file lands: the daemon ingests it and then retrains, without a click.
        from mlops_assets.ingest.seed import SeedFiles, land_held_back
        from mlops_assets.storage.fsstore import Storage

        land_held_back(Storage((home / "storage").as_uri()), DIABETES)
        landed = SeedFiles.of(DIABETES).held_back_landing.removeprefix("landing/")
        ingest = wait_for(
            f"an ingest run for {landed}",
            lambda: [
                r
                for r in runs(port)
                if r["jobName"] == "ingest_job"
                and r["tags"].get("dagster/partition") == landed
                and r["tags"].get("dagster/sensor_name") == "landing_sensor"
                and r["status"] == "SUCCESS"
            ],
        )[0]
        retrain = wait_for(
            "a retraining run after that ingest",
            lambda: [
                r
                for r in runs(port)
                if r["jobName"] == "retraining_job"
                and r["tags"].get("dagster/sensor_name") == "retrain_after_ingest_sensor"
                and r["creationTime"] > ingest["creationTime"]
                and r["status"] == "SUCCESS"
            ],
        )[0]
        assert retrain["tags"]["mlops/trigger"] == "new-data"
    finally:
        dagster_dev.stop(server)
        subprocess.run([str(BIN / "mlops-assets"), "down"], env=env, capture_output=True)


def test_the_lineage_checked_in_the_ui_is_every_asset_of_every_group(defs):
    """A new asset or group must be seen on its page too: LINEAGE is the whole graph."""
    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    assert groups == {f"diabetes_{group}": set(assets) for group, assets in LINEAGE.items()}
