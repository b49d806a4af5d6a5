"""The release rollout as plain functions: deploy, smoke-test, and on any failure put things back.

No Dagster here: the deployment assets call these and report what they return. Everything the
smoke test compares with (the key, the sample and the registered artifact's own predictions) is
known before anything is switched, so a broken new deployment cannot change the expectation.
Any failure after the switch, a run terminated mid-release included (Dagster raises
``DagsterExecutionInterruptedError``, a ``BaseException``), puts the previous version back before
the error goes on. A restore that fails too is named with the first error and alerted; the
registry's aliases are moved by the caller, only on success, so they are never touched here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlops_assets.hosting.health import DeploymentError
from mlops_assets.model.smoke import SmokeSample
from mlops_assets.release.deployments import Endpoint, Release
from mlops_assets.release.smoke import SmokeResult, smoke_test
from mlops_assets.release.targets import DeploymentTarget

Smoke = Callable[[str, str, SmokeSample, str], SmokeResult]
Alert = Callable[[str], object]


class RolloutError(Exception):
    """A release that failed, and how it ended (``outcome``); ``smoke`` is what the smoke test saw."""

    def __init__(
        self,
        message: str,
        smoke: SmokeResult,
        outcome: str,
        restore_failed: bool = False,
        switched: bool = True,
    ):
        super().__init__(message)
        self.smoke = smoke
        self.outcome = outcome
        self.restore_failed = restore_failed
        self.switched = switched  # False: the deploy itself failed, the version never served


@dataclass(frozen=True)
class Rollout:
    endpoint: Endpoint
    mode: str
    smoke: SmokeResult
    previous: Endpoint | None = None


def safe_smoke(smoke: Smoke, url: str, key: str, sample: SmokeSample, version: str) -> SmokeResult:
    """The smoke test as a result, whatever it raised (an Exception is a failed test, not a crash)."""
    try:
        return smoke(url, key, sample, version)
    except Exception as exc:
        return SmokeResult(url, failures=[f"the smoke test itself failed: {type(exc).__name__}: {exc}"])


def roll_out_qa(
    target: DeploymentTarget, release: Release, sample: SmokeSample, smoke: Smoke = smoke_test
) -> Rollout:
    """Deploy to QA and smoke-test it; on any failure QA is torn down, then the error goes on."""
    key = target.scoring_keys()[0]
    try:
        endpoint = target.deploy_qa(release)
        result = safe_smoke(smoke, endpoint.url, key, sample, release.version)
    except DeploymentError as exc:
        result = SmokeResult("(not deployed)", failures=[str(exc)])
    except BaseException:
        target.teardown_qa()
        raise
    if result.passed:
        return Rollout(endpoint, "qa", result)
    target.teardown_qa()
    raise RolloutError(
        f"QA deployment of version {release.version} failed, QA torn down: {'; '.join(result.failures)}",
        result,
        "QA torn down",
    )


def roll_out_production(
    target: DeploymentTarget,
    release: Release,
    sample: SmokeSample,
    restorable: Callable[[Endpoint], Release],
    alert: Alert,
    smoke: Smoke = smoke_test,
) -> Rollout:
    """Put ``release`` in production and smoke-test it there; on failure restore the previous version.

    ``restorable`` turns what served before into a release the target can deploy again, from the
    registry and the image reference (a build context may exist only on the machine that built it).
    """
    key = target.scoring_keys()[0]
    previous = target.production()
    switched = False
    try:
        endpoint, mode = target.release_production(release)
        switched = True
        result = safe_smoke(smoke, endpoint.url, key, sample, release.version)
    except DeploymentError as exc:
        result = SmokeResult(previous.url if previous else "(not deployed)", failures=[str(exc)])
    except BaseException as exc:
        try:
            outcome = _put_back(target, previous, restorable)
        except Exception as restore_error:
            message = _double_failure(release, previous, f"interrupted ({exc!r})", restore_error)
            alert(message)
            exc.add_note(message)
        else:
            exc.add_note(f"release of version {release.version} interrupted; {outcome}")
        raise
    if result.passed:
        return Rollout(endpoint, mode, result, previous)
    first = "; ".join(result.failures)
    try:
        outcome = _put_back(target, previous, restorable)
    except Exception as restore_error:
        message = _double_failure(release, previous, first, restore_error)
        alert(message)
        raise RolloutError(
            message, result, "restore failed", restore_failed=True, switched=switched
        ) from restore_error
    raise RolloutError(
        f"production release of version {release.version} failed ({first}); {outcome}",
        result,
        outcome,
        switched=switched,
    )


def _put_back(
    target: DeploymentTarget, previous: Endpoint | None, restorable: Callable[[Endpoint], Release]
) -> str:
    if previous is None:
        target.stop_production()
        return "no previous version: production stopped"
    restored = target.restore_production(restorable(previous))
    return f"rolled back to version {restored.version}"


def _double_failure(release: Release, previous: Endpoint | None, first: str, restore_error: Exception) -> str:
    what = f"restoring version {previous.version}" if previous else "stopping production"
    return (
        f"production release of version {release.version} failed ({first}), and {what} failed too "
        f"({type(restore_error).__name__}: {restore_error}); production needs an operator, aliases left as they were"
    )
