"""The alert rules: the committed Prometheus file is the generated one, each rule fires on its fault
and not without it (promtool's rule tests, Prometheus's own engine), a real Prometheus scraping a
real service and a real exporter finds every series the rules read and raises the request log's
alerts when its storage fails; and the local twins hold, wait and clear as the rules do."""

import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml
from dagster._core.scheduler.instigation import TickStatus

from mlops_assets.core import keys
from mlops_assets.core.alert_rules import (
    AlertState,
    AlertThresholds,
    Observation,
    Scrape,
    _p99,
    alert_rules,
    prometheus_rules_yaml,
    step,
)
from mlops_assets.core.instance import write_instance_config
from mlops_assets.core.pipeline_health import PipelineFigures
from mlops_assets.settings import Settings
from mlops_assets_tests.sensor_ticks import write_ticks
from mlops_assets_tests.serving_support import break_folder, free_port, service_with_own_log

REPO = Path(__file__).resolve().parents[1]
RULES_FILE = REPO / "deploy" / "prometheus" / "alerts.yml"
DEFAULTS = AlertThresholds.from_settings(Settings())


def test_the_committed_rules_are_the_generated_ones_and_promtool_accepts_them():
    assert RULES_FILE.read_text() == prometheus_rules_yaml(DEFAULTS), (
        "run: mlops-assets alert-rules > deploy/prometheus/alerts.yml"
    )
    checked = subprocess.run(["promtool", "check", "rules", str(RULES_FILE)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_command_prints_the_rules_for_the_thresholds_in_the_environment():
    printed = subprocess.run(
        [sys.executable, "-m", "mlops_assets.ops.cli", "alert-rules"],
        env={"PATH": "/usr/bin:/bin", "MLOPS_ALERT_P99_SECONDS": "0.05", "MLOPS_ALERT_INGEST_DAYS": "2"},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    rules = {r["alert"]: r for g in yaml.safe_load(printed)["groups"] for r in g["rules"]}
    assert rules["ScoringLatencyHigh"]["expr"].endswith("> 0.05")
    assert rules["PipelineIngestStale"]["expr"].endswith(f"> {2 * 86400}")


# Per rule: the input series (promtool notation), when to look, and the labels it fires with.
# The quiet series are the same system in health: the rule must not fire on them.
M = "1m"
CASES = {
    "ScoringDown": (
        M,
        {'up{job="scoring", instance="a:8080"}': ("0x5", "1x5")},
        "3m",
        {"job": "scoring", "instance": "a:8080"},
    ),
    "ScoringLatencyHigh": (
        M,
        {
            'scoring_request_latency_seconds_bucket{le="0.1"}': ("0+1x20", "0+100x20"),
            'scoring_request_latency_seconds_bucket{le="0.5"}': ("0+100x20", "0+100x20"),
            'scoring_request_latency_seconds_bucket{le="+Inf"}': ("0+100x20", "0+100x20"),
        },
        "16m",
        {},
    ),
    "ScoringServerErrors": (
        M,
        {
            'scoring_requests_total{code="200"}': ("0+90x20", "0+1000x20"),
            'scoring_requests_total{code="503"}': ("0+10x20", "0+1x20"),
        },
        "11m",
        {},
    ),
    "ScoringLogStuck": (M, {"scoring_log_stuck": ("0 1x5", "0x5")}, "3m", {}),
    "ScoringLogWriteFailures": (M, {"scoring_log_write_failures": ("0 0 2 2 2", "0x5")}, "3m", {}),
    "ScoringLogSpilled": (M, {"scoring_log_spilled_records": ("40x20", "0x20")}, "16m", {}),
    "ScoringLogBacklog": (M, {"scoring_log_backlog_records": ("150000x10", "5000x10")}, "6m", {}),
    "ScoringModelRefused": (M, {"scoring_model_load_failures_total": ("0 0 1 1", "0x4")}, "3m", {}),
    # promtool's clock starts at 0: a last success 8 (9) days before it, or at it.
    "PipelineIngestStale": (
        M,
        {'mlops_pipeline_last_success_timestamp_seconds{stage="ingest"}': (f"{-8 * 86400}x5", "0x5")},
        "2m",
        {"stage": "ingest"},
    ),
    "PipelineRetrainStale": (
        M,
        {'mlops_pipeline_last_success_timestamp_seconds{stage="retrain"}': (f"{-9 * 86400}x5", "0x5")},
        "2m",
        {"stage": "retrain"},
    ),
    "PipelineMetricsDown": (
        M,
        {'up{job="mlops-pipeline", instance="b:9464"}': ("0x10", "1x10")},
        "6m",
        {"job": "mlops-pipeline", "instance": "b:9464"},
    ),
    "SensorTicksFailing": (
        M,
        {
            'mlops_sensor_failed_ticks{sensor="landing_sensor"}': ("3x5", "2x5"),
            'mlops_sensor_failed_ticks{sensor="release_sensor"}': ("1x5", "0x5"),
        },
        "2m",
        {"sensor": "landing_sensor"},
    ),
}


def test_every_rule_fires_on_its_fault_and_stays_quiet_in_health(tmp_path):
    rules = {r.name: r for r in alert_rules(DEFAULTS)}
    assert set(CASES) == set(rules), "each rule needs a case"
    tests = []
    for name, (interval, series, at, labels) in CASES.items():
        for fault in (True, False):
            firing = [
                {
                    "exp_labels": {"severity": rules[name].severity, **labels},
                    "exp_annotations": {"summary": rules[name].summary},
                }
            ]
            tests.append(
                {
                    "name": f"{name} {'fault' if fault else 'health'}",
                    "interval": interval,
                    "input_series": [
                        {"series": s, "values": v[0 if fault else 1]} for s, v in series.items()
                    ],
                    "alert_rule_test": [
                        {"eval_time": at, "alertname": name, "exp_alerts": firing if fault else []}
                    ],
                }
            )
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(RULES_FILE)], "tests": tests}))
    ran = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_a_rule_held_for_less_than_its_time_does_not_fire_yet(tmp_path):
    """`for` is part of the condition: the spill must last 15 minutes, not one scrape."""
    test_file = tmp_path / "early_test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(RULES_FILE)],
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [{"series": "scoring_log_spilled_records", "values": "40x20"}],
                        "alert_rule_test": [
                            {"eval_time": "14m", "alertname": "ScoringLogSpilled", "exp_alerts": []}
                        ],
                    }
                ],
            }
        )
    )
    ran = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def _series_the_rules_read() -> set[str]:
    names = set()
    for rule in alert_rules(DEFAULTS):
        names |= set(re.findall(r"\b((?:scoring|mlops)_[a-z_]+)\b", rule.expr))
    return names


def _until(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


@pytest.mark.slow
def test_prometheus_scraping_the_service_and_the_exporter_finds_every_series_and_raises_the_log_alerts(
    tmp_path,
):
    service, logs, spill = service_with_own_log(tmp_path)
    dagster_home = tmp_path / "dagster"
    write_instance_config(dagster_home)  # telemetry off, as every instance the project writes
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:  # the exporter's, on disk
        instance.report_runless_asset_event(dg.AssetMaterialization(keys.VALIDATED_BATCH))
        instance.report_runless_asset_event(dg.AssetMaterialization(keys.CANDIDATE_MODEL))
        write_ticks(instance, "landing_sensor", [TickStatus.FAILURE] * 3)
    exporter_port, prometheus_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlops-assets"),
            "pipeline-metrics",
            "--listen",
            f"127.0.0.1:{exporter_port}",
        ],
        env={"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(dagster_home)},
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {"job_name": "scoring", "static_configs": [{"targets": [service.url.removeprefix("http://")]}]},
            {"job_name": "mlops-pipeline", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{prometheus_port}/api/v1"

    def get(path: str, **params):
        try:
            return httpx.get(f"{api}/{path}", params=params, timeout=5).json()["data"]
        except (httpx.HTTPError, KeyError, json.JSONDecodeError):
            return None

    def firing_or_pending() -> dict[str, str]:
        return {a["labels"]["alertname"]: a["state"] for a in (get("alerts") or {}).get("alerts", [])}

    try:
        service.wait_version("1")
        assert service.score().status_code == 200  # scoring_requests_total has a code from here on
        _until(
            lambda: (
                len([t for t in (get("targets") or {}).get("activeTargets", []) if t["health"] == "up"]) == 2
            ),
            "both targets up",
        )
        needed = _series_the_rules_read()
        _until(
            lambda: needed <= set(get("label/__name__/values") or []),
            f"every series the rules read: {needed}",
        )
        groups = get("rules")["groups"]
        assert {r["name"] for g in groups for r in g["rules"]} == set(CASES)
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
        # Wait for the asserted alert itself: PipelineMetricsDown may be pending while the exporter starts.
        _until(
            lambda: firing_or_pending().get("SensorTicksFailing") == "firing",
            "the failing sensor's alert firing",
        )
        assert "ScoringLogStuck" not in firing_or_pending()

        break_folder(logs / "scoring-logs")  # storage and spill fail together: a full disk
        break_folder(spill)
        assert service.score().status_code == 200  # its record is held in memory, then the writer fails

        def log_alerts_raised() -> bool:
            alerts = firing_or_pending()
            return alerts.get("ScoringLogWriteFailures") == "firing" and alerts.get("ScoringLogStuck") in (
                "pending",
                "firing",
            )

        _until(log_alerts_raised, "the request log's alerts: write failures firing, stuck pending or firing")
    finally:
        prometheus.terminate()
        exporter.terminate()
        service.stop()
        prometheus.wait(10)
        assert exporter.wait(10) == 0  # SIGTERM: a clean stop


def _seen(
    now, increase=None, gauges=None, last_success=None, failed_ticks=None, over_range=None
) -> Observation:
    pipeline = PipelineFigures(last_success or {}, failed_ticks or {})
    return Observation(now, increase, gauges, pipeline, over_range)


def test_the_local_p99_is_prometheus_histogram_quantile():
    # 98 requests at most 1 ms, 2 between 0.25 and 0.5 s: rank 99 falls halfway into that bucket.
    increase = {"le:0.001": 98, "le:0.25": 98, "le:0.5": 100, "le:+Inf": 100}
    assert _p99(increase) == pytest.approx(0.375)
    assert _p99({"le:0.1": 50, "le:+Inf": 100}) == pytest.approx(0.1)  # in +Inf: the highest bound
    assert _p99({"le:0.1": 0, "le:+Inf": 0}) is None  # no requests: no latency


def test_the_local_twins_wait_their_hold_time_keep_what_they_cannot_see_and_clear():
    rules = alert_rules(DEFAULTS)
    stuck = {"scoring_log_stuck": 1.0}
    first = step(rules, _seen(1000, {}, stuck), AlertState.empty())
    assert first.since == {"ScoringLogStuck": 1000} and first.firing == {}  # held, not yet a minute
    later = step(rules, _seen(1061, {}, stuck), first)
    assert set(later.firing) == {"ScoringLogStuck"}
    blind = step(rules, _seen(1090, None, None), later)  # /metrics did not answer: not cleared
    assert blind == later
    cleared = step(rules, _seen(1120, {}, {"scoring_log_stuck": 0.0}), blind)
    assert cleared == AlertState.empty()


def test_the_local_twins_read_rates_from_two_scrapes_and_a_restart_as_a_reset():
    text_before = 'scoring_requests_total{code="200"} 900.0\nscoring_requests_total{code="503"} 10.0\n'
    text_after = 'scoring_requests_total{code="200"} 950.0\nscoring_requests_total{code="503"} 60.0\n'
    before, after = Scrape.parse(text_before), Scrape.parse(text_after)
    assert after.increase_since(before) == {"code:200": 50.0, "code:503": 50.0}
    rules = alert_rules(replace(DEFAULTS, error_ratio=0.1))
    increase = after.increase_since(before)
    for_five_minutes = step(rules, _seen(0, increase, {}, over_range=increase), AlertState.empty())
    state = step(rules, _seen(301, increase, {}, over_range=increase), for_five_minutes)
    assert "50.0% of 100 requests answered 5xx" in state.firing["ScoringServerErrors"]
    restarted = Scrape.parse('scoring_requests_total{code="200"} 5.0\n')
    assert restarted.increase_since(after) == {"code:200": 5.0}  # counted from zero, not -945


def test_under_sparse_traffic_the_error_rule_is_judged_over_its_five_minutes_not_one_tick():
    """One request every two minutes, every one a 503: most 30 s ticks see no request at all.
    Prometheus's rate(...[5m]) still sees them all and fires after its 5 minutes; so does the twin."""
    from mlops_assets.core.alert_rules import ScrapeHistory

    rules = alert_rules(DEFAULTS)
    history, state, previous, failed = ScrapeHistory(), AlertState.empty(), None, 0
    fired_at = None
    for tick in range(40):  # 20 minutes of 30 s ticks
        now = 1000.0 + 30 * tick
        failed += tick % 4 == 0
        scrape = Scrape({"code:503": float(failed)}, {})
        history = history.add(now, scrape)
        increase = scrape.increase_since(previous) if previous else None
        state = step(rules, _seen(now, increase, {}, over_range=history.over_range()), state)
        previous = scrape
        if fired_at is None and "ScoringServerErrors" in state.firing:
            fired_at = now - 1000.0
    assert fired_at is not None and 300 <= fired_at <= 420, fired_at
    assert history.samples[0][0] >= 1000.0 + 30 * 39 - 300 - 30  # the cursor keeps five minutes, not all


def test_an_increase_counts_for_its_rules_range_then_clears():
    rules = alert_rules(DEFAULTS)
    refused = step(rules, _seen(0, {"refused": 1.0}, {}), AlertState.empty())
    assert refused.firing == {"ScoringModelRefused": "models refused by the service: 1"}
    assert step(rules, _seen(899, {"refused": 0.0}, {}), refused).firing == refused.firing
    assert step(rules, _seen(900, {"refused": 0.0}, {}), refused) == AlertState.empty()


def test_the_pipeline_twins_say_how_stale_and_which_sensors_fail():
    rules = alert_rules(DEFAULTS)
    now = 100 * 86400.0
    state = step(
        rules,
        _seen(
            now,
            last_success={"ingest": now - 8 * 86400, "retrain": now - 86400},
            failed_ticks={"landing_sensor": 4, "release_sensor": 2},
        ),
        AlertState.empty(),
    )
    assert state.firing == {
        "PipelineIngestStale": "no ingest for 8.0 days (limit 7)",
        "SensorTicksFailing": "sensors failing: landing_sensor (4 ticks in a row)",
    }
    never_ran = step(rules, _seen(now, last_success={"ingest": None, "retrain": None}), AlertState.empty())
    assert never_ran.firing == {}
