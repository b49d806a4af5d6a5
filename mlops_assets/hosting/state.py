"""What the local host records of its deployments, on disk: no process is started or signalled here.

Each deployment's record (supervisor pid, url, version, image, ...) is
MLOPS_HOME/deployments/NAME.json; a record whose supervisor died unstopped is kept as NAME.lost;
its folder (status, spill, model link, keys) is MLOPS_HOME/deployments/NAME/ID/. Whether a
recorded supervisor still runs is the lifecycle's question (``processes.py``).
"""

import contextlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops_assets.hosting.health import unreadiness


@dataclass(frozen=True)
class Deployment:
    name: str
    pid: int
    url: str
    port: int
    version: str
    image: str
    model_dir: str  # the release folder being served (a symlink's target for production)
    log: str
    started: float
    code_digest: str = ""
    deployment_id: str = ""
    listener: str = ""  # unix socket offering the listening socket to a successor (a handover)
    model_link: str = ""  # the symlink it serves from, moved by a model swap ("" = model_dir itself)
    runtime: str = "process"  # or "container"
    engine: str = ""  # the container engine
    container: str = ""  # the container's name
    folder: str = ""  # MLOPS_HOME/deployments/NAME/ID

    def describe(self) -> str:
        """How it runs, in words (the demo and `deployments` say it)."""
        if self.runtime == "container":
            return f"a supervised {self.engine} container ({self.container}) of image {self.image[:12]}"
        return "a supervised process from the release's venv (no container: see scoring_image)"

    def health(self, timeout: float = 2.0) -> str:
        """What it answers now: recorded state is not taken for health."""
        return unreadiness(self.url, self.version, timeout) or "answering ready"

    @property
    def status(self) -> dict:
        return read_status(Path(self.folder))

    def to_dict(self) -> dict:
        return asdict(self)


class DeploymentStore:
    """The records under ``state_dir`` (MLOPS_HOME/deployments), one file per deployment name."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def record_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    @staticmethod
    def pending_path(folder: Path) -> Path:
        """The record a deployment's supervisor writes as ``record_path`` once it commits."""
        return folder / "pending.json"

    def _lost_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.lost"

    def folder(self, name: str, deployment_id: str) -> Path:
        return self.state_dir / name / deployment_id

    def folders(self, name: str) -> list[Path]:
        """Every deployment folder of ``name`` still on disk, oldest name first."""
        root = self.state_dir / name
        return sorted(root.iterdir()) if root.is_dir() else []

    def owns(self, folder: Path) -> bool:
        """Whether ``folder`` is a deployment folder of this store (never clear anything else)."""
        return folder.parent.parent == self.state_dir

    def log(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def names(self) -> list[str]:
        return [p.stem for p in sorted(self.state_dir.glob("*.json"))]

    def read(self, name: str) -> Deployment | None:
        return _load(self.record_path(name))

    def write(self, deployment: Deployment) -> None:
        """Whole or not at all: a reader (``deployments``, ``down``, a sensor) never sees half a record."""
        _write_whole(self.record_path(deployment.name), deployment)

    def write_pending(self, deployment: Deployment) -> None:
        _write_whole(self.pending_path(Path(deployment.folder)), deployment)

    def read_pending(self, folder: Path) -> Deployment | None:
        return _load(self.pending_path(folder))

    def mark_lost(self, name: str) -> None:
        """Its supervisor died without being stopped: keep the record as what was lost."""
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.record_path(name), self._lost_path(name))

    def read_lost(self, name: str) -> Deployment | None:
        return _load(self._lost_path(name))

    def forget_lost(self, name: str) -> None:
        self._lost_path(name).unlink(missing_ok=True)

    def remove(self, name: str, mark_stopped: bool = True) -> None:
        """Stopped: neither a record nor a loss to bring back. ``mark_stopped`` (on purpose, not to
        be replaced at once) marks it (``stop_mark``): a keeper that was bringing ``name`` back
        when it was stopped leaves it so."""
        self.record_path(name).unlink(missing_ok=True)
        self.forget_lost(name)
        if mark_stopped:
            self._stopped_path(name).parent.mkdir(parents=True, exist_ok=True)
            self._stopped_path(name).write_text(f"{time.time_ns()}\n")

    def stop_mark(self, name: str) -> str | None:
        """What marks the last stop of ``name`` on purpose; another mark later: stopped again since."""
        try:
            return self._stopped_path(name).read_text().strip()
        except FileNotFoundError:
            return None

    def _stopped_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.stopped"


def _write_whole(path: Path, deployment: Deployment) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(deployment.to_dict(), indent=2))
    os.replace(staging, path)


def _load(path: Path) -> Deployment | None:
    try:
        return Deployment(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def read_status(folder: Path) -> dict:
    """A supervisor's status.json: the service's pid, its starts and exit codes ({} before any)."""
    try:
        return json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def point_link(link: Path, target: Path) -> None:
    """Move a symlink atomically (rename over it): readers see the old target or the new one."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
    tmp.symlink_to(target)
    os.replace(tmp, link)
