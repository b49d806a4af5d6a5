"""Release automation: each registered version becomes a model_versions partition and one release run."""

import json
import time
from dataclasses import asdict

import dagster as dg

from mlops_assets.core import keys
from mlops_assets.core.alert_rules import (
    AlertState,
    AlertThresholds,
    Observation,
    Scrape,
    ScrapeHistory,
    alert_rules,
    step,
)
from mlops_assets.core.alerts import AlertWebhook
from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.core.pipeline_health import pipeline_figures
from mlops_assets.hosting.health import unreadiness
from mlops_assets.registry.protocol import PRODUCTION_ALIAS
from mlops_assets.registry.resource import RegistryResource
from mlops_assets.release.assets import model_versions, prod_deployment, qa_deployment, scoring_image
from mlops_assets.release.targets import DeploymentTarget

RELEASE_SENSOR = "release_sensor"

release_job = dg.define_asset_job(
    "release_job",
    selection=dg.AssetSelection.assets(scoring_image, qa_deployment, prod_deployment),
    partitions_def=model_versions,
    tags={STAGE_TAG: "release"},
    description="One registered version (partition): scoring image (then QA and production).",
)

RELEASES_PER_TICK = 10


def build_release_sensor(default_status: dg.DefaultSensorStatus, interval: int = 15) -> dg.SensorDefinition:
    """The seed's "model artifact trigger": each registered version gets its own release run, in order.

    Not an ``@asset_sensor``: that one sees only the latest materialization since its last tick,
    so of two versions registered in quick succession the first would never be released. This
    reads every registration after the cursor, oldest first; the run queue's release limit (and
    the stage lock in-process) then runs them one at a time in that order.
    """

    @dg.sensor(
        name=RELEASE_SENSOR,
        job=release_job,
        default_status=default_status,
        minimum_interval_seconds=interval,
        description="Each new registry version becomes a model_versions partition and one release_job run.",
    )
    def release_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys.REGISTERED_MODEL, after_storage_id=int(context.cursor or 0)),
            limit=RELEASES_PER_TICK,
            ascending=True,
        ).records
        versions = [str(r.asset_materialization.metadata["version"].value) for r in records]
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=v, run_key=f"release-{v}") for v in versions],
            dynamic_partitions_requests=[model_versions.build_add_request(versions)] if versions else [],
            cursor=str(records[-1].storage_id) if records else context.cursor,
        )

    return release_sensor


HEALTH_SENSOR = "production_health_sensor"


def read_metrics(url: str, timeout: float = 3.0) -> Scrape | None:
    import httpx

    try:
        answer = httpx.get(f"{url}/metrics", timeout=timeout)
        answer.raise_for_status()
        return Scrape.parse(answer.text)
    except (httpx.HTTPError, ValueError):
        return None


def build_health_sensor(
    default_status: dg.DefaultSensorStatus, thresholds: AlertThresholds, interval: int = 30
) -> dg.SensorDefinition:
    """Production is asked, not assumed, to be up. A change of state is alerted from here (the
    serving side holds no webhook). When what served is lost outright (its supervisor died, so
    nothing will restart it) the champion is released again, once per loss; a deployment stopped
    on purpose (`mlops-assets down`) is left stopped. Each tick also evaluates the alert rules'
    local twins (core/alert_rules.py) over production's /metrics since the last tick and the
    pipeline's freshness, and posts each alert when it starts firing and when it clears."""
    rules = alert_rules(thresholds)

    @dg.sensor(
        name=HEALTH_SENSOR,
        job=release_job,
        default_status=default_status,
        minimum_interval_seconds=interval,
        description="Asks production whether it answers ready; alerts on a change, and releases the "
        "champion again when production was lost outright (not stopped on purpose). Posts the alert "
        "rules' conditions (p99, 5xx, request log, refused model, pipeline freshness, failing sensors).",
    )
    def production_health_sensor(
        context: dg.SensorEvaluationContext,
        deploy_target: DeploymentTarget,
        registry: RegistryResource,
        alerts: AlertWebhook,
    ) -> dg.SensorResult | dg.SkipReason:
        before = json.loads(context.cursor) if context.cursor else {"state": "serving", "problem": None}
        endpoint = deploy_target.production()
        requests, lost = [], None
        if endpoint is not None:
            problem = unreadiness(endpoint.url, endpoint.version)
            state = "serving" if problem is None else "unhealthy"
        else:
            lost = deploy_target.production_lost()
            state = "lost" if lost is not None else "stopped"
            problem = (
                None
                if lost is None
                else f"version {lost.version} at {lost.url} is gone (its supervisor died)"
            )
        if state == "lost":
            champion = registry.get_registry().get_alias(PRODUCTION_ALIAS)
            if champion is not None:
                # One release per loss: the deployment's own id (pids recur; a restore of the same
                # version lost again later is another loss).
                loss = lost.details.get("deployment_id") or f"{lost.details.get('pid')}-{lost.version}"
                requests.append(
                    dg.RunRequest(
                        partition_key=str(champion.version),
                        run_key=f"restore-{loss}",
                        tags={"mlops/trigger": "health-restore", "mlops/reason": problem},
                    )
                )
                problem += f"; releasing the champion, version {champion.version}, again"
        if state != before["state"] or problem != before.get("problem"):
            if problem:
                alerts.send(f"mlops-assets: production {problem}", sensor=HEALTH_SENSOR)
                context.log.warning(f"production {problem}")
            elif before["state"] in ("unhealthy", "lost"):
                alerts.send(f"mlops-assets: production answers again ({endpoint.url})", sensor=HEALTH_SENSOR)

        scrape = read_metrics(endpoint.url) if endpoint is not None else None
        previous = Scrape(**before["scrape"]) if before.get("scrape") else None
        now_s = time.time()
        history = ScrapeHistory.from_list(before.get("history"))
        if scrape is not None:
            history = history.add(now_s, scrape)
        seen = Observation(
            now=now_s,
            increase=scrape.increase_since(previous) if scrape and previous else None,
            gauges=scrape.gauges if scrape else None,
            pipeline=pipeline_figures(context.instance),
            over_range=history.over_range() if scrape else None,
        )
        was = AlertState(**before["alerts"]) if "alerts" in before else AlertState.empty()
        now = step(rules, seen, was)
        for name in sorted(now.firing.keys() - was.firing.keys()):
            alerts.send(f"mlops-assets: {name}: {now.firing[name]}", sensor=HEALTH_SENSOR, alert=name)
            context.log.warning(f"{name}: {now.firing[name]}")
        for name in sorted(was.firing.keys() - now.firing.keys()):
            alerts.send(f"mlops-assets: {name} resolved", sensor=HEALTH_SENSOR, alert=name)

        cursor = json.dumps(
            {
                "state": state,
                "problem": problem,
                "alerts": asdict(now),
                "scrape": asdict(scrape or previous) if (scrape or previous) else None,
                "history": history.to_list(),
            }
        )
        if not requests and state in ("serving", "stopped"):
            firing = f"; firing: {', '.join(sorted(now.firing))}" if now.firing else ""
            return dg.SensorResult(skip_reason=f"production {state}{firing}", cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return production_health_sensor
