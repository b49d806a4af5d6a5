"""The service in the environments it ships in: the `serving` group alone, and Azure ML's own server."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlops_assets.hosting.runtimes import ensure_venv
from mlops_assets.release.aml_code import write_code_folder
from mlops_assets.release.build_context import assemble, serving_requirements
from mlops_assets_tests.conftest import REPO
from mlops_assets_tests.projects import (
    CHURN,
    CHURN_ROWS,
    custom_transformer_project,
    fit_project,
    typed_rows,
    typed_seed,
    write_project_release,
)
from mlops_assets_tests.serving_support import SAMPLE, Service, free_port, predictions, write_release

pytestmark = pytest.mark.slow
UV = Path(sys.executable).parent / "uv"
# Azure ML's inference server pins what it needs; it gets its own venv (its pins conflict with ours).
AZUREML_SERVER = "azureml-inference-server-http==1.5.1"


def _uv(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(UV), *args],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


@pytest.fixture(scope="module")
def serving_venv(tmp_path_factory) -> Path:
    """Exactly what the image and the local targets install: a build context's locked `serving`
    requirements and the project with --no-deps (the release pipeline's own code makes both)."""
    root = tmp_path_factory.mktemp("serving-env")
    write_release(root / "release", version=4)
    manifest = json.loads((root / "release" / "manifest.json").read_text())
    artifact = (root / "release" / "model.skops").read_bytes()
    context, _ = assemble(root / "contexts", "model.skops", artifact, manifest, serving_requirements())
    return ensure_venv(root / "venvs", context.path)


def test_a_spec_only_edit_gets_a_venv_of_its_own_that_serves_it(tmp_path):
    """The process runtime's venv key covers everything it installs: a build context that differs
    only in its serving spec gets a venv holding that spec; the same context reuses its venv."""
    artifact, manifest = write_project_release(
        tmp_path / "release", CHURN, fit_project(CHURN, typed_seed(CHURN))
    )
    spec = CHURN.spec.serving_dict()
    edited = {**spec, "features": [{**f, "nullable": True} for f in spec["features"]]}
    venvs = []
    for name, serving_spec in (("before", spec), ("after", edited)):
        context, _ = assemble(
            tmp_path / name,
            manifest["artifact"],
            artifact,
            manifest,
            serving_requirements(),
            b"",
            serving_spec,
        )
        venvs.append(ensure_venv(tmp_path / "venvs", context.path))
        assert ensure_venv(tmp_path / "venvs", context.path) == venvs[-1]  # installed once
        packaged = subprocess.run(
            [
                str(venvs[-1] / "bin" / "python"),
                "-c",
                "from mlops_assets.model.rows import packaged_spec_path; print(packaged_spec_path().read_text())",
            ],
            cwd=tmp_path,  # not the repository: its own mlops_assets would come first
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(packaged.stdout) == serving_spec
    assert venvs[0] != venvs[1]


def test_serving_group_has_no_dagster_or_mlflow(serving_venv):
    python = str(serving_venv / "bin" / "python")
    for module in ("dagster", "mlflow"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
    imported = subprocess.run(
        [
            python,
            "-c",
            "import sys, mlops_assets.serving.app, mlops_assets.ops.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'mlflow', 'azure', 'adlfs')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "[]"


def test_the_service_runs_from_the_serving_group_alone(serving_venv, tmp_path):
    home = tmp_path / "mlops"
    model = write_release(home / "release", version=4)
    service = Service(home, home / "release", executable=serving_venv / "bin" / "mlops-assets").wait_live()
    try:
        service.wait_version("4")
        response = service.score()
        assert response.status_code == 200
        assert response.json()["result"] == pytest.approx(predictions(model), rel=1e-12)
    finally:
        service.stop()


def _azmlinfsrv(venv: Path, code: Path, models: Path):
    """Azure ML's inference server on ``code`` (score.py and what sits beside it), live."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PYTHON"))}
    env |= {"AZUREML_MODEL_DIR": str(models), "PATH": f"{venv / 'bin'}:{env['PATH']}"}
    server = subprocess.Popen(
        [str(venv / "bin" / "azmlinfsrv"), "--entry_script", "score.py", "--port", str(port)],
        cwd=code,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert server.poll() is None, server.stdout.read().decode()[-3000:]
        try:
            if httpx.get(f"{url}/", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "azmlinfsrv did not start"
        time.sleep(0.25)


def _code_folder(folder: Path, spec: dict | None = None) -> Path:
    return write_code_folder(folder, spec)


def test_score_py_runs_unchanged_in_azure_ml_s_inference_server_for_each_project(tmp_path):
    venv = tmp_path / "azureml"
    _uv("venv", "--python", sys.executable, str(venv))
    # The model's own library versions, as the AML environment (deploy/environments) pins them.
    _uv(
        "pip",
        "install",
        "--python",
        str(venv / "bin" / "python"),
        AZUREML_SERVER,
        "scikit-learn==1.9.1",
        "skops==0.16.0",
        "numpy",
        "pandas",
    )
    model = write_release(tmp_path / "models" / "diabetes" / "2", version=2)
    server, url = _azmlinfsrv(venv, _code_folder(tmp_path / "code"), tmp_path / "models")
    try:
        response = httpx.post(
            f"{url}/score",
            content=json.dumps(SAMPLE),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.json()["result"] == pytest.approx(predictions(model), rel=1e-12)
        bad = httpx.post(
            f"{url}/score", content='{"data": [[1, 2]]}', headers={"Content-Type": "application/json"}
        )
        assert "row 0 has 2 values; the model expects 10 (age" in bad.json()["error"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)

    # The churn classifier, its spec beside score.py as the release packages it: rows by name.

    churn_models = tmp_path / "churn-models"
    fitted = fit_project(CHURN, typed_seed(CHURN))
    write_project_release(churn_models / "churn" / "1", CHURN, fitted)
    code = _code_folder(tmp_path / "churn-code", CHURN.spec.serving_dict())
    server, url = _azmlinfsrv(venv, code, churn_models)
    try:
        answer = httpx.post(f"{url}/score", json={"data": CHURN_ROWS}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == [bool(v) for v in fitted.predict(typed_rows(CHURN, CHURN_ROWS))]
        assert set(answer.json()["probabilities"][0]) == {"false", "true"}
        wrong = httpx.post(f"{url}/score", json={"data": [{**CHURN_ROWS[0], "plan": "gold"}]}, timeout=10)
        assert "feature plan: 'gold' is outside one of basic, standard, premium" in wrong.json()["error"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)

    # A pipeline holding the project's own transformer class (in a helper module): the version's
    # package beside score.py, as the release packages it, is what the class loads from.
    from mlops_assets.project.loader import load_project

    clipped = load_project(custom_transformer_project(tmp_path / "clipped"))
    clipped_models = tmp_path / "clipped-models"
    fitted = fit_project(clipped, typed_seed(clipped))
    write_project_release(clipped_models / "clipped" / "1", clipped, fitted)
    code = write_code_folder(tmp_path / "clipped-code", clipped.spec.serving_dict(), clipped.sources())
    server, url = _azmlinfsrv(venv, code, clipped_models)
    try:
        answer = httpx.post(f"{url}/score", content=json.dumps(SAMPLE), timeout=10)
        assert answer.status_code == 200, answer.text
        expected = fitted.predict(
            typed_rows(
                clipped, [dict(zip(clipped.spec.feature_names, row, strict=True)) for row in SAMPLE["data"]]
            )
        )
        assert answer.json()["result"] == pytest.approx(expected.tolist(), rel=1e-9)
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
