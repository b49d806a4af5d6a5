"""The operators' alert conditions, each written once as a Prometheus rule and once as its local twin.

``deploy/prometheus/alerts.yml`` is generated from ``alert_rules()`` (`mlops-assets alert-rules`,
a test keeps the file current); ``production_health_sensor`` evaluates the same conditions, with
the same thresholds and hold times, over what it sees: production's ``/metrics`` between two ticks
and the Dagster instance (``core/pipeline_health.py``, also exported to Prometheus by
`mlops-assets pipeline-metrics`). Prometheus scrapes the service as job ``scoring`` and the exporter
as job ``mlops-pipeline``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import yaml

from mlops_assets.core.pipeline_health import FRESHNESS_STAGES, PipelineFigures

SERVICE_JOB = "scoring"
PIPELINE_JOB = "mlops-pipeline"
DAY = 86_400


@dataclass(frozen=True)
class AlertThresholds:
    p99_seconds: float
    error_ratio: float
    log_backlog_records: int
    ingest_days: float
    retrain_days: float
    failed_ticks: int

    @classmethod
    def from_settings(cls, settings) -> AlertThresholds:
        return cls(
            p99_seconds=settings.alert_p99_seconds,
            error_ratio=settings.alert_error_ratio,
            log_backlog_records=settings.alert_log_backlog_records,
            ingest_days=settings.alert_ingest_days,
            retrain_days=settings.alert_retrain_days,
            failed_ticks=settings.alert_failed_ticks,
        )


@dataclass(frozen=True)
class Scrape:
    """What one read of the service's ``/metrics`` says: counters (totals since each worker
    started) and gauges, flat, so a sensor cursor can keep it."""

    counters: dict[str, float]
    gauges: dict[str, float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        from prometheus_client.parser import text_string_to_metric_families

        counters: dict[str, float] = {}
        gauges: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "scoring_requests_total":
                    counters[f"code:{sample.labels['code']}"] = sample.value
                elif sample.name == "scoring_request_latency_seconds_bucket":
                    counters[f"le:{sample.labels['le']}"] = sample.value
                elif sample.name == "scoring_model_load_failures_total":
                    counters["refused"] = sample.value
                elif sample.name == "scoring_log_write_failures":
                    counters["log_failures"] = sample.value
                elif family.type == "gauge" and not sample.labels:
                    gauges[sample.name] = sample.value
        return cls(counters, gauges)

    def increase_since(self, before: Scrape | None) -> dict[str, float]:
        """Each counter's increase since ``before``; a counter that went down was reset (a worker
        restarted) and counts from zero, as Prometheus's ``increase()`` does."""
        if before is None:
            return dict(self.counters)
        return {
            name: value - before.counters[name] if before.counters.get(name, math.inf) <= value else value
            for name, value in self.counters.items()
        }


# The range of the rules' rate() ([5m]): the local twins judge latency and errors over it too,
# not over one tick, or under sparse traffic a tick without requests would clear the condition
# and it would never hold long enough to fire.
RATE_RANGE_SECONDS = 300


@dataclass(frozen=True)
class ScrapeHistory:
    """The service's scrapes over the last RATE_RANGE_SECONDS, and the newest one before them (the
    base a rate over the range is taken from), as (time, scrape), oldest first."""

    samples: tuple[tuple[float, Scrape], ...] = ()

    def add(self, now: float, scrape: Scrape) -> ScrapeHistory:
        samples = [*self.samples, (now, scrape)]
        older = [i for i, (at, _) in enumerate(samples) if at <= now - RATE_RANGE_SECONDS]
        return ScrapeHistory(tuple(samples[older[-1] :] if older else samples))

    def over_range(self) -> dict[str, float] | None:
        """The counters' increase over the range (from the base to the newest); None: one scrape."""
        if len(self.samples) < 2:
            return None
        return self.samples[-1][1].increase_since(self.samples[0][1])

    def to_list(self) -> list:
        return [[at, asdict(scrape)] for at, scrape in self.samples]

    @classmethod
    def from_list(cls, items: list | None) -> ScrapeHistory:
        return cls(tuple((at, Scrape(**scrape)) for at, scrape in items or ()))


@dataclass(frozen=True)
class Observation:
    """What the local sensor sees at one tick."""

    now: float
    increase: dict[str, float] | None  # counters' increase since the last tick; None: no window yet
    gauges: dict[str, float] | None  # None: /metrics did not answer (production down or none)
    pipeline: PipelineFigures
    # The counters' increase over RATE_RANGE_SECONDS (a rule's rate() range); None: not yet known.
    over_range: dict[str, float] | None = None


def _p99(increase: dict[str, float]) -> float | None:
    """histogram_quantile(0.99, ...) as Prometheus computes it: linear within the bucket that holds
    the rank; the rank in the +Inf bucket gives the highest finite bound."""
    buckets = sorted((float(k[3:]), v) for k, v in increase.items() if k.startswith("le:"))
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = 0.99 * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower


def _error_ratio(increase: dict[str, float]) -> tuple[float, float] | None:
    codes = {k[5:]: v for k, v in increase.items() if k.startswith("code:")}
    total = sum(codes.values())
    if total <= 0:
        return None
    errors = sum(v for code, v in codes.items() if code.startswith("5"))
    return errors / total, total


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str  # PromQL, over the service's and the exporter's metrics
    for_seconds: int  # how long it must hold before it fires (Prometheus's `for`)
    severity: str
    summary: str
    # The same condition as the local sensor sees it; None: its readiness check says it, at once.
    local: Callable[[Observation], str | None] | None
    window_seconds: int = 0  # an increase() rule: an increase counts this long (its range)

    @property
    def reads_service(self) -> bool:
        return self.name.startswith("Scoring")

    def prometheus(self) -> dict:
        rule = {"alert": self.name, "expr": self.expr}
        if self.for_seconds:
            rule["for"] = (
                f"{self.for_seconds // 60}m" if self.for_seconds % 60 == 0 else f"{self.for_seconds}s"
            )
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {"summary": self.summary}
        return rule


def alert_rules(t: AlertThresholds) -> list[AlertRule]:
    def when_served(check):  # a rate needs two reads of /metrics
        return lambda seen: None if seen.increase is None else check(seen)

    def over_range(check):  # rate(...[5m]): the increase over the rules' range, not one tick's
        return lambda seen: None if seen.over_range is None else check(seen.over_range)

    def latency(increase: dict[str, float]) -> str | None:
        p99 = _p99(increase)
        return None if p99 is None or p99 <= t.p99_seconds else f"p99 latency {p99:.3f} s > {t.p99_seconds} s"

    def errors(increase: dict[str, float]) -> str | None:
        ratio = _error_ratio(increase)
        if ratio is None or ratio[0] <= t.error_ratio:
            return None
        return f"{ratio[0]:.1%} of {ratio[1]:.0f} requests answered 5xx (503 included) > {t.error_ratio:.1%}"

    def gauge_over(name: str, limit: float, words: str):
        def check(seen: Observation) -> str | None:
            value = (seen.gauges or {}).get(name, 0.0)
            return f"{words}: {value:.0f}" if value > limit else None

        return check

    def increased(name: str, words: str):
        def check(seen: Observation) -> str | None:
            value = seen.increase.get(name, 0.0)
            return f"{words}: {value:.0f}" if value > 0 else None

        return check

    def stale(stage: str, days: float):
        def check(seen: Observation) -> str | None:
            last = seen.pipeline.last_success.get(stage)
            if last is None or seen.now - last <= days * DAY:
                return None
            return f"no {stage} for {(seen.now - last) / DAY:.1f} days (limit {days:g})"

        return check

    def ticks(seen: Observation) -> str | None:
        failing = {s: n for s, n in seen.pipeline.failed_ticks.items() if n >= t.failed_ticks}
        if not failing:
            return None
        return "sensors failing: " + ", ".join(
            f"{s} ({n} ticks in a row)" for s, n in sorted(failing.items())
        )

    service = f'job="{SERVICE_JOB}"'
    return [
        AlertRule(
            "ScoringDown",
            f"up{{{service}}} == 0",
            60,
            "critical",
            "The scoring service does not answer.",
            None,
        ),
        AlertRule(
            "ScoringLatencyHigh",
            "histogram_quantile(0.99, sum by (le) (rate(scoring_request_latency_seconds_bucket[5m])))"
            f" > {t.p99_seconds}",
            600,
            "warning",
            f"p99 of /score over 5 minutes is above {t.p99_seconds} s.",
            over_range(latency),
        ),
        AlertRule(
            "ScoringServerErrors",
            'sum(rate(scoring_requests_total{code=~"5.."}[5m])) / sum(rate(scoring_requests_total[5m]))'
            f" > {t.error_ratio}",
            300,
            "critical",
            f"More than {t.error_ratio:.1%} of /score requests answer 5xx (503: shedding, a full request log).",
            over_range(errors),
        ),
        AlertRule(
            "ScoringLogStuck",
            "max(scoring_log_stuck) > 0",
            60,
            "critical",
            "The request log can keep records nowhere (storage and spill folder failed): /score sheds with 503.",
            gauge_over("scoring_log_stuck", 0, "request log stuck, /score sheds"),
        ),
        AlertRule(
            "ScoringLogWriteFailures",
            "sum(increase(scoring_log_write_failures[10m])) > 0",
            0,
            "warning",
            "Request log batches could be kept neither in storage nor in the spill folder (retried).",
            when_served(increased("log_failures", "request log batches kept nowhere (retried)")),
            window_seconds=600,
        ),
        AlertRule(
            "ScoringLogSpilled",
            "max(scoring_log_spilled_records) > 0",
            900,
            "warning",
            "Request log records wait in the spill folder: storage refuses them.",
            gauge_over("scoring_log_spilled_records", 0, "request log records spilled, storage refuses them"),
        ),
        AlertRule(
            "ScoringLogBacklog",
            f"max(scoring_log_backlog_records) > {t.log_backlog_records}",
            300,
            "warning",
            f"More than {t.log_backlog_records} request log records are not yet written.",
            gauge_over("scoring_log_backlog_records", t.log_backlog_records, "request log records unwritten"),
        ),
        AlertRule(
            "ScoringModelRefused",
            "sum(increase(scoring_model_load_failures_total[15m])) > 0",
            0,
            "critical",
            "The service refused a model (sha256, types or unreadable): it serves the one before.",
            when_served(increased("refused", "models refused by the service")),
            window_seconds=900,
        ),
        *(
            AlertRule(
                name,
                f'time() - mlops_pipeline_last_success_timestamp_seconds{{stage="{stage}"}} > {days * DAY:g}',
                0,
                "warning",
                f"No {stage} ({FRESHNESS_STAGES[stage].to_user_string()}) for more than {days:g} days.",
                stale(stage, days),
            )
            for name, stage, days in (
                ("PipelineIngestStale", "ingest", t.ingest_days),
                ("PipelineRetrainStale", "retrain", t.retrain_days),
            )
        ),
        AlertRule(
            "PipelineMetricsDown",
            f'up{{job="{PIPELINE_JOB}"}} == 0',
            300,
            "warning",
            "mlops-assets pipeline-metrics does not answer: the pipeline's freshness alerts are blind.",
            None,  # the local sensor reads the instance itself
        ),
        AlertRule(
            "SensorTicksFailing",
            f"max by (sensor) (mlops_sensor_failed_ticks) >= {t.failed_ticks}",
            0,
            "warning",
            f"A sensor's last {t.failed_ticks} or more ticks failed.",
            ticks,
        ),
    ]


@dataclass(frozen=True)
class AlertState:
    """What the local sensor keeps between ticks: since when each condition holds, what fires."""

    since: dict[str, float]
    firing: dict[str, str]  # name -> what it said
    until: dict[str, float]  # an increase() rule: its last increase counts until then

    @classmethod
    def empty(cls) -> AlertState:
        return cls({}, {}, {})


def step(rules: list[AlertRule], seen: Observation, before: AlertState) -> AlertState:
    """The next state: a condition fires once it has held for its rule's hold time, as under
    Prometheus. While /metrics does not answer, what the service's conditions were is kept (not
    known to have cleared); the readiness check says that production is down."""
    since, firing, until = {}, {}, {}
    for rule in rules:
        name = rule.name
        if rule.local is None:
            continue
        if rule.reads_service and seen.gauges is None:
            for kept, was in ((since, before.since), (firing, before.firing), (until, before.until)):
                if name in was:
                    kept[name] = was[name]
            continue
        said = rule.local(seen)
        if said is not None and rule.window_seconds:
            until[name] = seen.now + rule.window_seconds
        elif said is None and seen.now < before.until.get(name, 0):
            said, until[name] = before.firing.get(name), before.until[name]  # still within its range
        if said is None:
            continue
        since[name] = before.since.get(name, seen.now)
        if seen.now - since[name] >= rule.for_seconds:
            firing[name] = said
    return AlertState(since, firing, until)


def prometheus_rules_yaml(t: AlertThresholds) -> str:
    rules = alert_rules(t)
    groups = [
        {"name": "mlops-scoring", "rules": [r.prometheus() for r in rules if r.name.startswith("Scoring")]},
        {
            "name": "mlops-pipeline",
            "rules": [r.prometheus() for r in rules if not r.name.startswith("Scoring")],
        },
    ]
    header = (
        "# Generated by `mlops-assets alert-rules` from mlops_assets/core/alert_rules.py (thresholds:\n"
        "# MLOPS_ALERT_* settings); production_health_sensor posts the same conditions locally.\n"
        f'# Scrape the scoring service as job "{SERVICE_JOB}" and `mlops-assets pipeline-metrics` as\n'
        f'# job "{PIPELINE_JOB}".\n'
    )
    return header + yaml.safe_dump({"groups": groups}, sort_keys=False, width=200)
