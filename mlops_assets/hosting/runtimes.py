"""What a local deployment's supervisor runs: the service as a process or as a container.

Both accept on the supervisor's listening socket (file descriptor 3) and keep what the request
log cannot deliver in the deployment's own spill folder. No Dagster here.
"""

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fsspec.utils import get_protocol

from mlops_assets.hosting.build_layout import (
    AZURE_REQUIREMENTS,
    PROJECT_DIR,
    PROJECT_INDEX,
    PROJECT_LOCK,
    PROJECT_REQUIREMENTS,
    PROJECT_WHEELS,
    REQUIREMENTS,
)
from mlops_assets.hosting.engines import PROBE_TIMEOUT, Engine
from mlops_assets.hosting.sizing import LOCAL, sizing
from mlops_assets.hosting.supervisor import LISTEN_FD, write_read_only
from mlops_assets.project.environment import index_options, uv
from mlops_assets.settings import SERVICE_ENVIRONMENT, child_environment, get_settings

SERVE = "mlops-assets"
# The Kubernetes manifest's security context (deploy/k8s/deployment.yaml), as engine flags.
SERVICE_UID = 10001
CONTAINER_SECURITY = (
    "--user", f"{SERVICE_UID}:{SERVICE_UID}",
    "--read-only",
    "--cap-drop", "all",
    "--security-opt", "no-new-privileges",
)  # fmt: skip
# The manifest's limits; podman with runc and cgroupfs enforces them and --cpus here (DESIGN.md).
# CPUs are the project's (hosting/sizing.py).
CONTAINER_LIMITS = ("--memory", "1g", "--pids-limit", "256")
# Settings the container is given by value (never the operator's whole environment).
CONTAINER_TUNING = tuple(
    name
    for name in SERVICE_ENVIRONMENT
    if name.startswith(("MLOPS_SCORING_MAX", "MLOPS_SCORING_LOG_MAX", "MLOPS_SCORING_LOG_FLUSH"))
    or name in ("MLOPS_MODEL_POLL_SECONDS", "MLOPS_SCORING_DRAIN_SECONDS", "MLOPS_MODEL_PROJECT")
)
# What DefaultAzureCredential reads to pick an identity (never a secret: no AZURE_CLIENT_SECRET).
AZURE_IDENTITY = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST")
SPILL_IN_CONTAINER = "/srv/spill"
LOG_ROOT_IN_CONTAINER = "/srv/log-root"
SECRETS_IN_CONTAINER = "/run/secrets/mlops"


def venvs_dir(home: Path) -> Path:
    """Where the process runtime keeps a home's venvs (one per distinct code part of a context)."""
    return home / "release" / "venvs"


def venv_key(context: Path) -> str:
    """The name of the venv a context installs into. It covers everything installed: the
    requirements and every file of the project (the packaged serving spec and project package
    beside the code included), each by its path and content."""
    azure = context / AZURE_REQUIREMENTS
    key = hashlib.sha256((context / REQUIREMENTS).read_bytes())
    key.update(azure.read_bytes() if azure.exists() else b"")
    project = context / PROJECT_DIR
    for path in sorted(p for p in project.rglob("*") if p.is_file()):
        key.update(
            path.relative_to(project).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest()
        )
    own = context / PROJECT_REQUIREMENTS  # a project's own packages, for a version that locks some
    for path in sorted(p for p in own.rglob("*") if p.is_file()):
        key.update(
            path.relative_to(context).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest()
        )
    return key.hexdigest()[:16]


def ensure_venv(venvs_dir: Path, context: Path) -> Path:
    """A venv with exactly the context's requirements and project, shared by identical contexts
    (named by ``venv_key``)."""
    azure = context / AZURE_REQUIREMENTS
    venv = venvs_dir / venv_key(context)
    if (venv / ".complete").exists():
        return venv
    run = {"check": True, "capture_output": True, "stdin": subprocess.DEVNULL}
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(venv)], **run)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [uv(), "pip", "install", "-q", "--python", python, "-r", str(context / REQUIREMENTS)], **run
    )
    if azure.exists() and azure.stat().st_size:
        subprocess.run([uv(), "pip", "install", "-q", "--python", python, "-r", str(azure)], **run)
    lock = context / PROJECT_LOCK
    if lock.exists():  # the project's own packages, each by hash, from where the context says
        wheels, index = context / PROJECT_WHEELS, context / PROJECT_INDEX
        source = index_options(str(wheels) if wheels.is_dir() else index.read_text().strip())
        install = [uv(), "pip", "install", "--no-config", "-q", "--python", python, "--require-hashes"]
        subprocess.run([*install, "-r", str(lock), *source], **run)
    subprocess.run(
        [uv(), "pip", "install", "-q", "--python", python, "--no-deps", str(context / PROJECT_DIR)], **run
    )
    (venv / ".complete").write_text("")
    return venv


@dataclass(frozen=True)
class Service:
    """The service's command line and the supervisor's environment (the process inherits it)."""

    command: list[str]
    environment: dict[str, str]
    container: str = ""  # the container's name, removed if the supervisor could not
    supervisor_args: tuple[str, ...] = ()  # what the supervisor keeps current for it


@dataclass(frozen=True)
class ProcessRuntime:
    """The service from the build context's own locked `serving` requirements, in a venv."""

    home: Path  # MLOPS_HOME: the venvs live under it, and the service is given it
    name: str = "process"
    engine_name: str = ""

    def service(
        self, folder: Path, deployment_id: str, context: Path, image: str, serve_from: Path
    ) -> Service:
        venv = ensure_venv(venvs_dir(self.home), context)
        command = [str(venv / "bin" / SERVE), "serve", "--model-dir", str(serve_from)]
        command += ["--listen-fd", str(LISTEN_FD), "--workers", str(sizing(context, LOCAL).workers)]
        environment = child_environment(
            *SERVICE_ENVIRONMENT,
            MLOPS_HOME=str(self.home),
            MLOPS_DEPLOYMENT_ID=deployment_id,
            MLOPS_SCORING_SPILL_DIR=str(folder / "spill"),
        )
        return Service(command, environment)

    def remove(self, container: str) -> None:
        """Nothing outlives the supervisor's process group."""


@dataclass(frozen=True)
class ContainerRuntime:
    """The release's image, run with the manifest's security settings on the inherited socket.

    Writable: the deployment's spill folder and, for a local log root, its scoring-logs/ folder
    (given to the service's uid on a rootful engine). No network unless the request log or
    telemetry goes to a remote service. Keys and credentials reach it as read-only mounted files
    (``MLOPS_SECRETS_DIR``), never as environment variables (which `inspect` shows).
    """

    engine: Engine
    name: str = "container"

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def service(
        self, folder: Path, deployment_id: str, context: Path, image: str, serve_from: Path
    ) -> Service:
        settings = get_settings()
        container = f"mlops-{folder.parent.name}-{deployment_id[:12]}"
        spill = folder / "spill"
        secrets = folder / "secrets"
        for made in (spill, secrets):
            made.mkdir(parents=True, exist_ok=True)
        owner = SERVICE_UID if os.geteuid() == 0 else None  # rootless: keep-id maps the host user
        secret_files: dict[str, str] = {}
        if settings.scoring_keys:
            secret_files["scoring-keys"] = settings.scoring_keys.get_secret_value().replace(",", "\n")
            supervisor_args: tuple[str, ...] = ()
        else:  # the keys file: the supervisor copies it before the start and at every edit (rotation)
            supervisor_args = ("--mirror", f"{settings.keys_file}:{secrets / 'scoring-keys'}")
            supervisor_args += ("--mirror-owner", str(owner)) if owner is not None else ()
        env = {
            "MLOPS_DEPLOYMENT_ID": deployment_id,
            "MLOPS_SCORING_SPILL_DIR": SPILL_IN_CONTAINER,
            "MLOPS_SCORING_KEYS_FILE": f"{SECRETS_IN_CONTAINER}/scoring-keys",
            "MLOPS_SECRETS_DIR": SECRETS_IN_CONTAINER,  # credentials as files, read by the settings
        }
        env |= {name: os.environ[name] for name in CONTAINER_TUNING if name in os.environ}
        mounts = [f"{spill}:{SPILL_IN_CONTAINER}:rw", f"{secrets}:{SECRETS_IN_CONTAINER}:ro"]
        writable = [spill]
        log_root = settings.scoring_log_root
        remote = get_protocol(log_root) not in ("file", "local")
        if remote:
            env["MLOPS_SCORING_LOG_URL"] = log_root
            env |= {name: os.environ[name] for name in AZURE_IDENTITY if name in os.environ}
            if settings.azure_storage_account:
                env["MLOPS_AZURE_STORAGE_ACCOUNT"] = settings.azure_storage_account
            if settings.azure_storage_connection_string:
                secret_files["MLOPS_AZURE_STORAGE_CONNECTION_STRING"] = (
                    settings.azure_storage_connection_string.get_secret_value()
                )
        else:
            logs = Path(log_root.removeprefix("file://")) / "scoring-logs"
            logs.mkdir(parents=True, exist_ok=True)
            mounts.append(f"{logs}:{LOG_ROOT_IN_CONTAINER}/scoring-logs:rw")
            env["MLOPS_SCORING_LOG_URL"] = LOG_ROOT_IN_CONTAINER
            writable += [logs, *(p for p in logs.iterdir() if p.is_dir())]
        telemetry = settings.applicationinsights_connection_string
        if telemetry:
            secret_files["APPLICATIONINSIGHTS_CONNECTION_STRING"] = telemetry.get_secret_value()
        for name, value in secret_files.items():
            write_read_only(secrets / name, value.encode(), owner)
        self._give_to_service_user([*writable, secrets])
        command = [self.engine.name, "run", "--rm", "--replace", "--name", container]
        command += ["--preserve-fds", "1", "--network", "host" if remote or telemetry else "none"]
        size = sizing(context, LOCAL)
        command += [*CONTAINER_SECURITY, *CONTAINER_LIMITS, "--cpus", f"{size.cpus:g}", "--no-healthcheck"]
        if os.geteuid() != 0 and self.engine.name == "podman":  # host user = the service's uid
            command += ["--userns", f"keep-id:uid={SERVICE_UID},gid={SERVICE_UID}"]
        for mount in mounts:
            command += ["--volume", mount]
        for name, value in env.items():
            command += ["--env", f"{name}={value}"]
        command += [image, "--listen-fd", str(LISTEN_FD), "--workers", str(size.workers)]
        return Service(command, self.engine.environment(), container, supervisor_args)

    @staticmethod
    def _give_to_service_user(paths: list[Path]) -> None:
        """On a rootful engine the container's uid is the host's; a rootless one maps it (keep-id)."""
        if os.geteuid() == 0:
            for path in paths:
                os.chown(path, SERVICE_UID, SERVICE_UID)

    def remove(self, container: str) -> None:
        if container:
            self.engine.run("rm", "--force", "--time", "0", container, timeout=PROBE_TIMEOUT)


def runtime_of(name: str, home: Path, engine_name: str = "") -> ProcessRuntime | ContainerRuntime:
    if name == "container":
        return ContainerRuntime(Engine(engine_name or "podman"))
    return ProcessRuntime(home)


def give_tree_to_service_user(path: Path) -> None:
    """Spill adopted from a process deployment (root's) stays deliverable by a container."""
    if os.geteuid() == 0 and path.exists():
        for dirpath, _, filenames in os.walk(path):
            os.chown(dirpath, SERVICE_UID, SERVICE_UID)
            for filename in filenames:
                os.chown(Path(dirpath) / filename, SERVICE_UID, SERVICE_UID)
