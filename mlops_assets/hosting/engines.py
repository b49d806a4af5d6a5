"""Container engines: the first of podman and docker whose ``version`` call answers.

A docker client without a daemon is common (this machine has one): ``docker version`` then fails,
so the probe is the engine's own answer, never the CLI's presence. Podman is configured through
this project's files (``deploy/podman/``: runc, cgroupfs, ulimits), never by editing /etc.
No Dagster here.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlops_assets.settings import child_environment, host_ca_bundle

REPO = Path(__file__).resolve().parents[2]
PODMAN_CONFIG = REPO / "deploy" / "podman"
# What an engine's CLI needs of the operator's environment to find its daemon or storage.
ENGINE_ENVIRONMENT = (
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "CONTAINER_HOST",
    "XDG_RUNTIME_DIR",
)
ENGINES = ("podman", "docker")
BUILD_CA_PATH = "/run/build-ca-bundle.crt"
# How long an engine's quick answers (version, inspect, rm) may take. Not seconds: while another
# build writes a large image, podman's commands wait on its storage (measured here: `podman
# version` took up to 10.8 s beside the 2.3 GB code-location build, and at a 10 s limit the
# release took the engine for absent). A missing daemon still fails at once.
PROBE_TIMEOUT = 300.0
# The bases taken without being named: the one deploy/docker/python-base.sh builds from Debian
# packages (make container-base), then the Dockerfiles' default. Never pulled unasked.
LOCAL_PYTHON_BASE = "localhost/mlops-python-base:3.11-bookworm"
PYTHON_BASES = (LOCAL_PYTHON_BASE, "docker.io/library/python:3.11.11-slim-bookworm")


@dataclass(frozen=True)
class Engine:
    name: str

    def environment(self) -> dict[str, str]:
        own = {}
        if self.name == "podman":
            own = {
                "CONTAINERS_CONF": str(PODMAN_CONFIG / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(PODMAN_CONFIG / "storage.conf"),
            }
        return child_environment(*ENGINE_ENVIRONMENT, **own)

    def run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.name, *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def build_args(self, tag: str, base: str, context: Path, dockerfile: Path | None = None) -> list[str]:
        """``build`` of ``context`` as every image here is built: the base as PYTHON_BASE, host
        network (builds install from PyPI), the host's CA bundle for the build alone."""
        args = ["build", "--tag", tag, "--network", "host", "--build-arg", f"PYTHON_BASE={base}"]
        if dockerfile is not None:
            args += ["--file", str(dockerfile)]
        if self.name == "podman":  # the OCI format podman defaults to drops the HEALTHCHECK
            args += ["--format", "docker"]
        bundle = host_ca_bundle()
        if bundle and self.name == "podman":  # docker build has no volumes: mounted for the build alone
            args += ["--volume", f"{bundle}:{BUILD_CA_PATH}:ro", "--build-arg", f"CA_BUNDLE={BUILD_CA_PATH}"]
        return [*args, str(context)]

    def python_base(self, configured: str = "") -> str | None:
        """``configured``, else the first of PYTHON_BASES this engine has, else None."""
        return configured or next((base for base in PYTHON_BASES if self.has_image(base)), None)

    def has_image(self, reference: str) -> bool:
        return (
            self.run("image", "inspect", "--format", "{{.Id}}", reference, timeout=PROBE_TIMEOUT).returncode
            == 0
        )


def find_engine(names: tuple[str, ...] = ENGINES, timeout: float = PROBE_TIMEOUT) -> Engine | None:
    """The first engine that answers, or None."""
    for name in names:
        if shutil.which(name) is None:
            continue
        engine = Engine(name)
        try:
            if engine.run("version", timeout=timeout).returncode == 0:
                return engine
        except subprocess.TimeoutExpired:
            continue
    return None
