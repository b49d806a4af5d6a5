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

from mlops_assets.settings import child_environment

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

    def has_image(self, reference: str) -> bool:
        return self.run("image", "inspect", "--format", "{{.Id}}", reference, timeout=30).returncode == 0


def find_engine(names: tuple[str, ...] = ENGINES, timeout: float = 10.0) -> Engine | None:
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
