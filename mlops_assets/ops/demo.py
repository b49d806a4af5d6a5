"""``make demo``: the whole loop on embedded defaults, told in words a newcomer follows."""

import json
import os
import sys
import time

import dagster as dg

from mlops_assets.core.instance import write_instance_config
from mlops_assets.ingest.seed import SeedFiles, land_held_back, seed, seed_parts
from mlops_assets.ops.runner import (
    IngestOutcome,
    ReleaseOutcome,
    RetrainOutcome,
    ingest_new_files,
    monitor,
    release,
    retrain,
    sensor_tags,
)
from mlops_assets.registry.protocol import PRODUCTION_ALIAS
from mlops_assets.release.automation import RELEASE_SENSOR
from mlops_assets.settings import Settings
from mlops_assets.training.assets import reported_metrics
from mlops_assets.training.automation import RETRAIN_SENSOR, plan_retrain


def _say_ingest(outcomes: list[IngestOutcome]) -> None:
    if not outcomes:
        print("  no new files under landing/: every file there has been ingested already")
    for outcome in outcomes:
        if outcome.success:
            print(f"  ✓ {outcome.partition}: {outcome.rows} rows passed every blocking check")
        else:
            print(f"  ✗ {outcome.partition}: refused")
            for problem in outcome.failed_checks + outcome.errors:
                print(f"      {problem}")
        for warning in outcome.warnings:
            print(f"    warning (not blocking): {warning}")


def _say_retrain(outcome: RetrainOutcome) -> None:
    if not outcome.success:
        print("  ✗ retraining failed:")
        for error in outcome.errors:
            print(f"      {error}")
        return
    data, candidate, evaluation = outcome.training_data, outcome.candidate, outcome.evaluation
    print(
        f"  training data {data['data_version']}: {data['rows']} rows from {len(data['batches'])} batch(es)"
    )
    metrics = ", ".join(f"{name} {value:.4g}" for name, value in reported_metrics(candidate).items())
    print(f"  candidate: {metrics} on {candidate['n_holdout']} held-out rows")
    if outcome.registered:
        print(
            f"  → registered {outcome.registered['model_name']} version {outcome.registered['version']}: {evaluation['reason']}"
        )
    else:
        print(f"  → clean skip, nothing registered: {evaluation['reason']}")


def _say_release(outcome: ReleaseOutcome) -> None:
    def verdict(passed: bool | None) -> str:
        return {True: "passed", False: "FAILED", None: "not reached"}[passed]

    print(
        f"  QA smoke test {verdict(outcome.qa_passed)}, production smoke test {verdict(outcome.prod_passed)}"
    )
    if outcome.success:
        prod = outcome.production
        print(f"  → version {outcome.version} serves at {prod['url']} ({prod['mode']})")
    else:
        for error in outcome.errors:
            print(f"  ✗ {error}")


def _round(title: str, defs, instance, storage, settings: Settings) -> None:
    print(f"\n{title}")
    print(" ingest (landing_sensor's plan, run in-process):")
    _say_ingest(ingest_new_files(defs, instance, storage, settings.lock_dir))
    plan = plan_retrain(instance, 0)
    if plan.run_key:  # tagged as the sensor's run, so a later daemon does not retrain again
        print(f" retraining_job ({RETRAIN_SENSOR}'s run: {plan.reason}):")
        tags = {**sensor_tags(RETRAIN_SENSOR, plan.run_key), "mlops/trigger": "new-data"}
    else:
        print(f" retraining_job (by hand: {plan.reason}):")
        tags = {"mlops/trigger": "demo"}
    retrained = retrain(defs, instance, settings.lock_dir, tags=tags)
    _say_retrain(retrained)
    if retrained.registered:
        version = retrained.registered["version"]
        print(f" release_job for version {version} (release_sensor's run):")
        _say_release(
            release(
                defs, instance, settings.lock_dir, version, sensor_tags(RELEASE_SENSOR, f"release-{version}")
            )
        )


def release_failed_before_serving(versions: list, champion) -> int | None:
    """The newest version after the champion whose release failed before it ever served (a busy
    port, an engine down): worth another try; a version rolled back after serving is not."""
    floor = champion.version if champion is not None else 0
    failed = [v.version for v in versions if v.version > floor and v.release_state == "failed"]
    return max(failed, default=None)


def _ensure_production(defs, instance, settings: Settings) -> None:
    """Release again the newest version whose release failed before it served; else reuse the
    production deployment if it serves the champion, or release the champion again."""
    registry = defs.resources["registry"].get_registry()
    champion = registry.get_alias(PRODUCTION_ALIAS)
    retry = release_failed_before_serving(registry.list_versions(), champion)
    if retry is not None:
        print(f"\nProduction: version {retry}'s release failed before it served; releasing it again:")
        outcome = release(defs, instance, settings.lock_dir, retry, {"mlops/trigger": "demo-retry"})
        _say_release(outcome)
        if outcome.success:
            return
        champion = registry.get_alias(PRODUCTION_ALIAS)
    if champion is None:
        print("\nNo version has reached production.")
        return
    running = defs.resources["deploy_target"].target().get("production")
    if running is not None and running.version == str(champion.version):
        print(f"\nProduction: reusing the running deployment of version {champion.version} at {running.url}")
        return
    print(
        f"\nProduction: version {champion.version} is the champion but not running here; releasing it again:"
    )
    _say_release(release(defs, instance, settings.lock_dir, champion.version, {"mlops/trigger": "demo"}))


def client_rows(project, frame) -> list[dict]:
    """Rows as a client sends them, by feature name: JSON numbers, true/false, text, null."""
    import math

    import pandas as pd

    kinds = {name: column.kind for name, column in project.spec.features.items()}
    rows = []
    for record in frame[list(kinds)].astype(object).to_dict(orient="records"):
        row = {}
        for name, kind in kinds.items():
            value = record[name]
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                row[name] = None
            else:
                row[name] = {"categorical": str, "boolean": bool, "integer": int}.get(kind, float)(value)
        rows.append(row)
    return rows


def _client_rows(defs) -> list[dict]:
    """Rows of the held-back seed data, as a client would send them."""
    project = defs.resources["project"].get()
    return client_rows(project, seed_parts(project, defs.resources["project"].python(project))[1])


def _score_like_a_client(defs, url: str, key: str, requests: int = 40) -> int:
    """Real (not synthetic) traffic for the monitoring loop: rows of the held-back data."""
    import httpx

    rows = _client_rows(defs)
    answered = 0
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
        for index in range(requests):
            chunk = [rows[(index * 5 + i) % len(rows)] for i in range(5)]
            answered += client.post(f"{url}/score", json={"data": chunk}).status_code == 200
    return answered


def _wait_for_logs(storage, day: str, at_least: int, timeout: float = 15) -> int:
    """The service writes its log in batches every second: wait for ours to be in storage."""
    deadline = time.monotonic() + timeout
    while True:
        lines = sum(
            storage.read_bytes(f.path).count(b"\n")
            for f in storage.list_files(f"scoring-logs/date={day}", versions=False)
        )
        if lines >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def _monitoring_round(defs, instance, storage, settings: Settings) -> None:
    production = defs.resources["deploy_target"].target().get("production")
    if production is None:
        return
    from datetime import UTC, datetime

    day = datetime.now(UTC).date().isoformat()
    already = _wait_for_logs(storage, day, 0, timeout=0)
    key = defs.resources["deploy_target"].scoring_keys()[0]
    answered = _score_like_a_client(defs, production.url, key)
    _wait_for_logs(storage, day, already + answered)
    print(f"\nMonitoring: {answered} scoring requests sent to production; monitoring_job for {day}:")
    outcome = monitor(defs, instance, settings.lock_dir, day, {"mlops/trigger": "demo"})
    if not outcome.success:
        print("  ✗ monitoring failed:")
        for error in outcome.errors:
            print(f"    {error}")
        return
    logs, drift = outcome.logs, outcome.drift
    print(
        f"  ✓ scoring_logs[{day}]: {logs['requests']} requests, {logs['rows']} rows, model versions "
        f"{logs['model_versions']}, latency p99 {logs['latency_ms'].get('p99', 0)} ms (synthetic left out: "
        f"{logs['synthetic_excluded']})"
    )
    print(
        f"  ✓ drift_report[{day}]: {drift['summary']} over {drift['rows']} rows, against {drift['against']}"
    )


DEMO_SCORING_INPUT = "scoring-input/demo-clinic.csv"


def _batch_round(defs, instance, storage, settings: Settings) -> None:
    """A file to score in bulk with the production model; one row unreadable, on purpose."""
    from mlops_assets.ops.runner import failure_messages, score_new_files

    if defs.resources["registry"].get_registry().get_alias("production") is None:
        return
    if not storage.exists(DEMO_SCORING_INPUT):
        project = defs.resources["project"].get()
        held_back = seed_parts(project, defs.resources["project"].python(project))[1]
        rows = held_back[list(project.spec.feature_names)].astype(object)
        rows.loc[rows.index[7], project.spec.feature_names[-1]] = "n/a"
        storage.write_bytes(DEMO_SCORING_INPUT, rows.to_csv(index=False).encode())
    print("\nBatch scoring (scoring-input/ -> scoring-output/):")
    done = score_new_files(defs, instance, storage, settings.lock_dir)
    if not done:
        print("  nothing new under scoring-input/")
    for name, result in done:
        if not result.success:
            print(f"  ✗ {name}: " + "; ".join(failure_messages(result)))
            continue
        meta = result.asset_materializations_for_node("batch_predictions")[0].metadata
        refused = meta["refused"].value
        print(
            f"  ✓ batch_predictions[{name}]: {meta['scored'].value} of {meta['rows'].value} rows scored with "
            f"version {meta['model_version'].value}, {refused} refused"
            + (" (reasons in the .refused.parquet beside the output)" if refused else "")
        )


def _why_nothing_serves(registry) -> str:
    versions = registry.list_versions()
    if not versions:
        return "no version was registered (retraining failed, as said above)."
    champion = registry.get_alias(PRODUCTION_ALIAS)
    failed = release_failed_before_serving(versions, champion)
    if failed is not None:
        return (
            f"the release of version {failed} failed, as said above. Once its cause is fixed, release it "
            f"again: .venv/bin/mlops-assets promote {failed} (or make demo again)"
        )
    if champion is not None:
        return (
            f"version {champion.version} is the champion but its release failed, as said above; "
            f"release it again: .venv/bin/mlops-assets promote {champion.version}"
        )
    return "no version is in production and none is waiting for a release; see the steps above."


def run_demo(settings: Settings) -> int:
    started = time.monotonic()
    dagster_home = settings.dagster_home
    write_instance_config(dagster_home)
    os.environ["DAGSTER_HOME"] = str(dagster_home)  # the process that runs the demo is the instance's
    from mlops_assets.definitions import build_definitions

    defs = build_definitions(settings)
    storage = defs.resources["storage"].get()
    print(f"mlops-assets demo, profile {settings.profile}; everything lives under {settings.home_dir}")
    project = defs.resources["project"].get()
    report = seed(storage, project, defs.resources["project"].python(project))
    print(
        f"seed: first file {report.first_rows} rows, held-back file {report.held_back_rows} rows; "
        f"wrote {', '.join(report.written) or 'nothing (already seeded)'}"
    )
    with dg.DagsterInstance.get() as instance:
        _round("Round 1: the first file", defs, instance, storage, settings)
        landed = land_held_back(storage, project)
        note = "landed" if landed else "had landed before"
        _round(
            f"Round 2: the held-back file ({SeedFiles.of(project).held_back_landing} {note})",
            defs,
            instance,
            storage,
            settings,
        )
        _ensure_production(defs, instance, settings)
        _monitoring_round(defs, instance, storage, settings)
        _batch_round(defs, instance, storage, settings)
        registry = defs.resources["registry"].get_registry()
        print("\nRegistered versions:")
        for version in registry.list_versions():
            aliases = f" [{', '.join(version.aliases)}]" if version.aliases else ""
            primary = version.tags.get("primary_metric", project.spec.evaluation.primary_metric)
            print(
                f"  {registry.model_name} v{version.version}{aliases}: {primary} "
                f"{float(version.tags[primary]):.4g}, data {version.tags['data_version']}, {version.release_state}"
            )
        production = defs.resources["deploy_target"].target().get("production")
    if production is None:
        print(f"\n✗ No production deployment is running: {_why_nothing_serves(registry)}", file=sys.stderr)
        return 1
    print(
        f"\nProduction URL: {production.url}/score (version {production.version}); key in {settings.keys_file}"
    )
    print(f"  target: local, {production.describe()}")
    body = json.dumps({"data": _client_rows(defs)[:1]})
    print(f"  curl -X POST {production.url}/score -H \"Authorization: Bearer <key>\" -d '{body}'")
    print(f"\nDone in {time.monotonic() - started:.0f} s. See the lineage and rerun any step: make dev, then")
    port = os.environ.get("DAGSTER_PORT", "3000")  # make dev's port (the Makefile's setting)
    print(
        f"open http://127.0.0.1:{port} (same instance, same storage; log in with the token in "
        f"{settings.home_dir / 'secrets' / 'ui-token'}). Stop the deployments: .venv/bin/mlops-assets down"
    )
    return 0
