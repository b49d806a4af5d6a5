"""What a team deploys, checked as far as this machine can: the code-location image's command
really serves the definitions, the Helm values reference only what deploy/ defines, and every
command the build pipelines run exists. (No Docker engine, Helm or cluster here.)"""

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlops_assets.ops.cli import build_parser
from mlops_assets_tests.conftest import REPO, subprocess_env
from mlops_assets_tests.ports import free_port

DOCKERFILE = REPO / "deploy" / "docker" / "dagster.Dockerfile"
VALUES = REPO / "deploy" / "helm" / "values.yaml"
K8S_DAGSTER = REPO / "deploy" / "k8s" / "dagster"
TEAM_INSTANCE = REPO / "deploy" / "dagster" / "dagster.yaml"
PIPELINES = [REPO / "deploy" / "azure-pipelines" / "ci.yml", REPO / ".github" / "workflows" / "ci.yml"]
IMAGE = "mlops-assets-dagster"
BIN = Path(sys.executable).parent


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]


def test_the_code_location_image_installs_the_lock_runs_as_a_user_and_checks_its_health():
    instructions = dockerfile_instructions()
    (base,) = [arg for op, arg in instructions if op == "FROM"]
    args = dict(arg.split("=", 1) for op, arg in instructions if op == "ARG" and "=" in arg)
    assert base == "${PYTHON_BASE}"  # every external image is a build argument
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["PYTHON_BASE"])  # pinned, never :latest
    runs = [arg for op, arg in instructions if op == "RUN"]
    assert any("uv sync --frozen --no-dev --no-install-project" in r for r in runs)
    assert any("uv sync --frozen --no-dev" in r and "--no-install-project" not in r for r in runs)
    (user,) = [arg for op, arg in instructions if op == "USER"]
    assert not user.startswith(("0", "root"))
    for op, arg in instructions:
        if op == "COPY" and not arg.startswith("--from"):
            *sources, _ = arg.split()
            assert all((REPO / s).exists() for s in sources), arg
    healthcheck = next(arg for op, arg in instructions if op == "HEALTHCHECK")
    assert '"dagster", "api", "grpc-health-check", "--port", "4000"' in healthcheck
    uv_pin = re.search(r"^UV_VERSION := (\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert args["UV_VERSION"] == uv_pin  # the Makefile's uv, from PyPI
    assert not any(op == "COPY" and arg.startswith("--from") for op, arg in instructions)


def test_the_image_command_serves_the_definitions_and_passes_its_health_check(settings):
    """The image's CMD and HEALTHCHECK, run here from the same lock."""
    import json

    cmd = json.loads(next(arg for op, arg in dockerfile_instructions() if op == "CMD"))
    port = free_port()
    cmd = [str(BIN / cmd[0]), *cmd[1:]]
    cmd[cmd.index("--host") + 1], cmd[cmd.index("--port") + 1] = "127.0.0.1", str(port)
    env = subprocess_env(settings.home_dir)
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:
            check = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "--port", str(port)],
                env=env,
                capture_output=True,
                text=True,
            )
            if check.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, check.stdout + check.stderr
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _k8s_objects() -> list[dict]:
    return [
        doc for path in sorted(K8S_DAGSTER.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
    ]


def test_the_helm_values_reference_only_what_deploy_defines():
    values = yaml.safe_load(VALUES.read_text())
    objects = _k8s_objects()
    synced_secrets = {
        s["secretName"]
        for o in objects
        if o["kind"] == "SecretProviderClass"
        for s in o["spec"]["secretObjects"]
    }
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    provider_classes = {o["metadata"]["name"] for o in objects if o["kind"] == "SecretProviderClass"}

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    referenced_secrets = {values["global"]["postgresqlSecretName"]}
    referenced_secrets |= {s["name"] for s in deployment["envSecrets"] + launcher["envSecrets"]}
    assert referenced_secrets <= synced_secrets
    assert {c["name"] for c in deployment["envConfigMaps"] + launcher["envConfigMaps"]} <= config_maps
    csi = [v["csi"]["volumeAttributes"]["secretProviderClass"] for v in deployment["volumes"] if "csi" in v]
    assert csi and set(csi) <= provider_classes
    # The password key the chart reads from its secret is the one the CSI driver writes.
    (pg,) = [
        s
        for o in objects
        if o["kind"] == "SecretProviderClass"
        for s in o["spec"]["secretObjects"]
        if s["secretName"] == values["global"]["postgresqlSecretName"]
    ]
    assert [d["key"] for d in pg["data"]] == ["postgresql-password"]
    assert values["generatePostgresqlPasswordSecret"] is False and values["postgresql"]["enabled"] is False

    assert deployment["image"]["repository"].endswith(f"/{IMAGE}")
    assert deployment["codeServerArgs"] == ["--module-name", "mlops_assets.definitions"]
    assert values["serviceAccount"]["name"] == values["global"]["serviceAccountName"]

    # The same instance as deploy/dagster/dagster.yaml (tested against PostgreSQL).
    team = yaml.safe_load(TEAM_INSTANCE.read_text())
    custom = values["computeLogManager"]["config"]["customComputeLogManager"]
    assert {k: custom[k] for k in ("module", "class", "config")} == {
        k: team["compute_logs"][k] for k in ("module", "class", "config")
    }
    settings_map = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mlops-settings"
    )
    for pod in ("dagsterWebserver", "dagsterDaemon"):  # they write compute logs and talk to Postgres
        assert {"name": "mlops-settings"} in values[pod]["envConfigMaps"]
    assert custom["config"]["storage_account"]["env"] in settings_map["data"]
    assert settings_map["data"]["PGSSLMODE"] == "require"
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"][
        "tagConcurrencyLimits"
    ]
    assert limits == team["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert values["postgresql"]["postgresqlScheme"] == team["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["telemetry"] == {"enabled": False}


def test_on_aks_the_ui_is_reached_only_through_entra_id_proxies_and_viewers_get_a_read_only_webserver():
    """Checked statically (no cluster or Helm here): the proxies' manifests are valid, each logs in
    with Entra ID and sends its group to its webserver (operators: the full one; viewers: the
    chart's read-only one), their secrets are the Key Vault-synced ones, the webservers are not
    exposed, and a NetworkPolicy lets only the proxies reach them."""
    valid = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", str(K8S_DAGSTER / "ui-proxy.yaml")],
        capture_output=True,
        text=True,
    )
    assert valid.returncode == 0, valid.stdout + valid.stderr
    values = yaml.safe_load(VALUES.read_text())
    webserver = values["dagsterWebserver"]
    assert webserver["enableReadOnly"] is True and webserver["service"]["type"] == "ClusterIP"
    port = webserver["service"]["port"]
    objects = _k8s_objects()
    proxies = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "ui-proxy"
    }
    upstreams = {
        "ui-proxy-operators": f"http://dagster-webserver.dagster.svc.cluster.local:{port}",
        "ui-proxy-viewers": f"http://dagster-webserver-read-only.dagster.svc.cluster.local:{port}",
    }
    assert set(proxies) == set(upstreams)
    synced = {
        (s["secretName"], d["key"])
        for o in objects
        if o["kind"] == "SecretProviderClass"
        for s in o["spec"]["secretObjects"]
        for d in s["data"]
    }
    for name, container in proxies.items():
        args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
        assert args["upstream"] == upstreams[name]
        assert args["provider"] == "entra-id" and args["oidc-issuer-url"].startswith(
            "https://login.microsoftonline.com/"
        )
        assert (
            args["allowed-group"] and args["cookie-secure"] == "true" and args["cookie-samesite"] == "strict"
        )
        used = {
            (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container["env"]
        }
        assert used <= synced
    assert not [
        o for o in objects if o["kind"] == "Ingress" or o.get("spec", {}).get("type") == "LoadBalancer"
    ]
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    (selected,) = policy["spec"]["podSelector"]["matchExpressions"]
    assert "dagster-webserver" in selected["values"] and "dagster-webserver-read-only" in selected["values"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "ui-proxy"}}}]


def test_the_settings_config_map_and_the_pipeline_exporter_are_valid_manifests():
    result = subprocess.run(
        [
            str(BIN / "kubernetes-validate"),
            "--strict",
            str(K8S_DAGSTER / "mlops-settings.yaml"),
            str(K8S_DAGSTER / "pipeline-metrics.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pipeline_exporter_runs_the_command_on_the_chart_s_instance_with_synced_secrets():
    objects = _k8s_objects()
    values = yaml.safe_load(VALUES.read_text())
    (exporter,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "pipeline-metrics"
    ]
    pod = exporter["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    parsed = build_parser().parse_args(command[1:])
    assert command[0] == "mlops-assets" and parsed.func.__name__ == "cmd_pipeline_metrics"
    assert parsed.listen.endswith(f":{container['ports'][0]['containerPort']}")
    assert (
        container["image"].split(":")[0]
        == values["dagster-user-deployments"]["deployments"][0]["image"]["repository"]
    )
    (password,) = [e for e in container["env"] if e["name"] == "DAGSTER_PG_PASSWORD"]
    synced = {
        s["secretName"]: [d["key"] for d in s["data"]]
        for o in objects
        if o["kind"] == "SecretProviderClass"
        for s in o["spec"]["secretObjects"]
    }
    ref = password["valueFrom"]["secretKeyRef"]
    assert ref["name"] == values["global"]["postgresqlSecretName"] and ref["key"] in synced[ref["name"]]
    assert {e["configMapRef"]["name"] for e in container["envFrom"]} <= {
        o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"
    }
    assert pod["serviceAccountName"] == values["global"]["serviceAccountName"]
    home = next(e["value"] for e in container["env"] if e["name"] == "DAGSTER_HOME")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == home]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "dagster-instance"  # the chart's, for its release "dagster"


def _commands(pipeline: Path) -> list[str]:
    document = yaml.safe_load(pipeline.read_text())
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("script", "run", "inlineScript") and isinstance(value, str):
                    found.extend(part.strip() for part in value.split("&&"))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    return found


MAKE_TARGETS = set(re.findall(r"^([A-Za-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_command_a_build_pipeline_runs_exists(pipeline):
    commands = _commands(pipeline)
    programs = {shlex.split(c)[0] for c in commands}
    assert programs <= {"make", "az", "helm", "apt-get"}, programs
    targets = [shlex.split(c)[1] for c in commands if c.startswith("make ")]
    assert {"lint", "test-ci", "data-test", "validate"} <= set(targets)
    for target in targets:
        assert target in MAKE_TARGETS, target
        dry = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
    text = pipeline.read_text()
    for path in re.findall(r"(?:--file|--values|-f)\s+(\S+)", text):
        assert (REPO / path).is_file(), path
    assert f"IMAGE: {IMAGE}" in text or f"value: {IMAGE}" in text
    assert "test-results/junit.xml" in (REPO / "Makefile").read_text()
