"""The rollout functions, without Dagster: real deployments (processes on 127.0.0.1), real MLflow
registry, faults injected where a release goes wrong. Each ends with production on the previous
version, or a named double failure with an alert, and QA gone after any QA failure."""

import shutil
from pathlib import Path

import httpx
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from mlops_assets.core.alerts import AlertWebhook
from mlops_assets.definitions import build_definitions
from mlops_assets.hosting.health import DeploymentError
from mlops_assets.hosting.processes import LocalTarget
from mlops_assets.model.smoke import SmokeSample
from mlops_assets.release.deployments import Release
from mlops_assets.release.from_registry import assemble_version, restorable_release, smoke_sample
from mlops_assets.release.local_target import LocalDeploymentTarget
from mlops_assets.release.rollout import RolloutError, roll_out_production, roll_out_qa
from mlops_assets.release.smoke import smoke_test
from mlops_assets.settings import get_settings
from mlops_assets_tests.release_support import register
from mlops_assets_tests.serving_support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """One MLOPS_HOME for the module: each test leaves production as it found it (on version 1)."""
    home = tmp_path_factory.mktemp("rollout") / "mlops"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))
        get_settings.cache_clear()
        yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def stage(settings):
    """Two registered versions, a local target on free ports, version 1 in production."""
    defs = build_definitions(settings)
    models = defs.resources["registry"].get_registry()
    one, two = register(defs, 0.5), register(defs, 50.0)
    contexts = settings.home_dir / "release" / "contexts"
    target = LocalDeploymentTarget(
        home=str(settings.home_dir), qa_port=free_port(), production_port=free_port()
    )

    def release_of(version: int) -> Release:
        context = assemble_version(models, version, contexts)[0]
        return Release(str(version), context.tag, context.path, context.code_digest)

    def restorable(previous):
        return restorable_release(models, previous, contexts)

    def release_two(through=target, sample=None, alert=print, smoke=smoke_test):
        """Version 2 to production as the release asset does it, with the fault a test injects."""
        sample = sample or smoke_sample(models, two)
        return roll_out_production(through, release_of(two), sample, restorable, alert, smoke=smoke)

    first = roll_out_production(target, release_of(one), smoke_sample(models, one), restorable, print)
    assert first.smoke.passed and first.previous is None
    models.set_alias("production", one)
    yield {
        "models": models,
        "one": one,
        "two": two,
        "target": target,
        "release_of": release_of,
        "restorable": restorable,
        "url": first.endpoint.url,
        "release_two": release_two,
    }
    local = LocalTarget(settings.home_dir)
    for deployment in local.list():
        local.stop(deployment.name)


@pytest.fixture(autouse=True)
def same_settings(settings):
    """Each test sees the module's settings (conftest's fixtures would give it a home of its own)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _served_version(url: str) -> str:
    return httpx.get(f"{url}/health/ready", timeout=5).json()["version"]


def _assert_back_on(stage, version: int) -> None:
    assert _served_version(stage["url"]) == str(version)
    assert stage["target"].production().version == str(version)
    assert stage["models"].get_alias("production").version == version  # the rollout never moves aliases


def _raises(*_):
    raise ValueError("the answer was not JSON")


def test_a_smoke_test_that_raises_is_a_failure_and_production_goes_back(stage):
    with pytest.raises(RolloutError) as failed:
        stage["release_two"](smoke=_raises)
    assert "the smoke test itself failed: ValueError: the answer was not JSON" in str(failed.value)
    assert f"rolled back to version {stage['one']}" in str(failed.value)
    assert not failed.value.smoke.passed
    _assert_back_on(stage, stage["one"])


def test_a_missing_build_context_is_assembled_again_from_the_registry_for_the_restore(stage):
    one = stage["one"]
    serving_from = Path(stage["target"].production().context)
    shutil.rmtree(serving_from)  # as on a machine that never built version 1
    wrong = SmokeSample([[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]], [0.0], "test")
    with pytest.raises(RolloutError, match=f"rolled back to version {one}"):
        stage["release_two"](sample=wrong)
    assert (serving_from / "model" / "manifest.json").is_file()  # content-addressed: the same folder
    _assert_back_on(stage, one)


def test_an_edited_build_context_is_assembled_again_from_the_registry_for_the_restore(stage):
    """Version 1's context edited consistently (another model, its manifest updated to match): the
    restore serves the registry's version 1, not the edited files."""
    from mlops_assets.release.build_context import intact
    from mlops_assets_tests.serving_support import predictions, write_release

    one = stage["one"]
    serving_from = Path(stage["target"].production().context)
    impostor = write_release(serving_from.parent / "impostor", one, alpha=500.0)
    for name in ("model.skops", "manifest.json"):
        shutil.copy2(serving_from.parent / "impostor" / name, serving_from / "model" / name)
    assert not intact(serving_from)
    wrong = SmokeSample([[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]], [0.0], "test")
    with pytest.raises(RolloutError, match=f"rolled back to version {one}"):
        stage["release_two"](sample=wrong)
    _assert_back_on(stage, one)
    assert intact(serving_from)
    sample = smoke_sample(stage["models"], one)
    served = httpx.post(
        f"{stage['url']}/score",
        json={"data": sample.rows},
        headers={"Authorization": f"Bearer {stage['target'].scoring_keys()[0]}"},
    ).json()["result"]
    assert served == pytest.approx(sample.predictions, rel=1e-9)
    assert served != pytest.approx(predictions(impostor, {"data": sample.rows}), rel=1e-6)


def test_a_deploy_that_fails_after_the_switch_is_undone(stage):
    two = stage["two"]

    class DiesAfterTheSwitch(LocalDeploymentTarget):
        def release_production(self, release):
            switched = super().release_production(release)
            if release.version == str(two):  # the new version dies; putting back the old one works
                raise DeploymentError("the new deployment died right after the switch")
            return switched

    broken = DiesAfterTheSwitch(**stage["target"].model_dump())
    with pytest.raises(RolloutError, match="died right after the switch") as failed:
        stage["release_two"](through=broken)
    assert f"rolled back to version {stage['one']}" in str(failed.value)
    _assert_back_on(stage, stage["one"])


def test_a_run_terminated_mid_release_restores_then_stops(stage):
    def terminated(*_):
        raise DagsterExecutionInterruptedError("the run was terminated")

    with pytest.raises(DagsterExecutionInterruptedError) as interrupted:
        stage["release_two"](smoke=terminated)
    assert f"rolled back to version {stage['one']}" in "\n".join(interrupted.value.__notes__)
    _assert_back_on(stage, stage["one"])


def test_a_failing_restore_is_named_with_the_first_error_alerted_and_aliases_left(stage, webhook):
    class CannotRestore(LocalDeploymentTarget):
        def restore_production(self, release):
            raise DeploymentError("the previous image is gone from the registry")

    broken = CannotRestore(**stage["target"].model_dump())
    one = stage["one"]
    wrong = SmokeSample([[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]], [0.0], "test")
    with pytest.raises(RolloutError) as failed:
        stage["release_two"](through=broken, sample=wrong, alert=AlertWebhook(url=webhook.url).send)
    message = str(failed.value)
    assert failed.value.restore_failed
    assert "differ from the model's" in message  # the first error
    assert f"restoring version {one} failed too" in message and "previous image is gone" in message
    assert [body["text"] for body in webhook.received] == [message]
    assert stage["models"].get_alias("production").version == one
    assert stage["models"].get_alias("qa") is None
    assert _served_version(stage["url"]) == str(stage["two"])  # left for an operator, who puts it back:
    stage["target"].restore_production(stage["release_of"](one))
    _assert_back_on(stage, one)


@pytest.mark.parametrize("fault", ["smoke fails", "terminated"])
def test_any_qa_failure_tears_qa_down(stage, settings, fault):
    two = stage["two"]
    sample = smoke_sample(stage["models"], two)

    def terminated(*_):
        raise DagsterExecutionInterruptedError("the run was terminated")

    if fault == "smoke fails":
        with pytest.raises(RolloutError, match=f"QA deployment of version {two} failed, QA torn down"):
            roll_out_qa(
                stage["target"],
                stage["release_of"](two),
                SmokeSample(sample.rows, [0.0] * len(sample.rows), "t"),
            )
    else:
        with pytest.raises(DagsterExecutionInterruptedError):
            roll_out_qa(stage["target"], stage["release_of"](two), sample, smoke=terminated)
    assert LocalTarget(settings.home_dir).get("qa") is None
    _assert_back_on(stage, stage["one"])  # production untouched
