"""Local deployments as processes on 127.0.0.1: start, swap, hand over, stop, list.

Each deployment has a state file (pid, url, version, image) under MLOPS_HOME/deployments. No
Dagster here: `mlops-assets deployments` and `down` read and stop them without importing it.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from mlops_assets.release.deployments import DeploymentError
from mlops_assets.settings import SERVICE_ENVIRONMENT, child_environment

SERVE_MARKER = "mlops-assets"


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

    def to_dict(self) -> dict:
        return asdict(self)


def _uv() -> str:
    return str(Path(sys.executable).parent / "uv")


def ensure_venv(venvs_dir: Path, context: Path) -> Path:
    """A venv with exactly the context's requirements and project, shared by identical contexts."""
    key = hashlib.sha256((context / "requirements.txt").read_bytes())
    for path in sorted((context / "project").rglob("*.py")):
        key.update(path.read_bytes())
    venv = venvs_dir / key.hexdigest()[:16]
    if (venv / ".complete").exists():
        return venv
    run = {"check": True, "capture_output": True, "stdin": subprocess.DEVNULL}
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], **run)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [_uv(), "pip", "install", "-q", "--python", python, "-r", str(context / "requirements.txt")], **run
    )
    subprocess.run(
        [_uv(), "pip", "install", "-q", "--python", python, "--no-deps", str(context / "project")], **run
    )
    (venv / ".complete").write_text("")
    return venv


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return SERVE_MARKER.encode() in cmdline  # never signal a recycled pid that is not ours


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _require_free_port(host: str, port: int, name: str) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DeploymentError(
                f"{name}: port {port} on {host} is already in use ({exc.strerror}); stop what holds it "
                f"or set MLOPS_{name.upper()}_PORT to a free port"
            ) from None


class LocalTarget:
    def __init__(self, home: Path, host: str = "127.0.0.1") -> None:
        self.home = home
        self.host = host
        self.state_dir = home / "deployments"
        self.venvs_dir = home / "release" / "venvs"

    def _state_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def get(self, name: str) -> Deployment | None:
        path = self._state_path(name)
        if not path.exists():
            return None
        deployment = Deployment(**json.loads(path.read_text()))
        if not _alive(deployment.pid):
            path.unlink()
            return None
        return deployment

    def list(self) -> list[Deployment]:
        found = (self.get(p.stem) for p in sorted(self.state_dir.glob("*.json")))
        return [d for d in found if d is not None]

    def stop(self, name: str, timeout: float = 30) -> bool:
        deployment = self.get(name)
        self._state_path(name).unlink(missing_ok=True)
        if deployment is None:
            return False
        self._terminate(deployment, timeout)
        return True

    def _terminate(self, deployment: Deployment, timeout: float = 30) -> None:
        os.killpg(deployment.pid, signal.SIGTERM)  # graceful: drains, then flushes the request log
        deadline = time.monotonic() + timeout
        while _alive(deployment.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(deployment.pid):
            os.killpg(deployment.pid, signal.SIGKILL)
        self._remove_link(deployment.name, deployment.model_link)

    def _remove_link(self, name: str, model_link: str) -> None:
        if model_link and Path(model_link).parent.parent == self.state_dir / name:
            shutil.rmtree(Path(model_link).parent, ignore_errors=True)

    def _listener_address(self, name: str, deployment_id: str) -> str:
        """An abstract unix socket, unique to this MLOPS_HOME and deployment."""
        home = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return f"@mlops-assets/{home}/{name}/{deployment_id}"

    def deploy(
        self,
        name: str,
        context: Path,
        version: str,
        image: str,
        port: int,
        ready_timeout: float = 90,
        code_digest: str = "",
        linked: bool = False,
        replacing: Deployment | None = None,
    ) -> Deployment:
        """Start this context's service as deployment ``name``; fail (and clean up) unless ready.

        Without ``replacing``, whatever ran as ``name`` is stopped first and the port must be free.
        With it, the new process takes over ``replacing``'s listening socket, and ``replacing`` is
        drained and stopped only once the new one is ready: a failed start leaves it serving.
        ``linked`` serves through a symlink of this deployment's own, so later model swaps move it.
        """
        venv = ensure_venv(self.venvs_dir, context)
        if replacing is None:
            self.stop(name)
            _require_free_port(self.host, port, name)
        deployment_id = uuid.uuid4().hex
        self.state_dir.mkdir(parents=True, exist_ok=True)
        serve_from, model_link = context / "model", ""
        if linked:
            link = self.state_dir / name / deployment_id / "model"
            point_link(link, context / "model")
            serve_from, model_link = link, str(link)
        listener = self._listener_address(name, deployment_id)
        log = self.state_dir / f"{name}.log"
        env = child_environment(
            *SERVICE_ENVIRONMENT, MLOPS_HOME=str(self.home), MLOPS_DEPLOYMENT_ID=deployment_id
        )
        command = [
            str(venv / "bin" / SERVE_MARKER),
            "serve",
            "--model-dir",
            str(serve_from),
            "--host",
            self.host,
            "--port",
            str(port),
            "--workers",
            "1",
            "--share-listener",
            listener,
        ]
        if replacing is not None and replacing.listener:
            command += ["--take-listener", replacing.listener]
        with open(log, "a") as handle:
            process = subprocess.Popen(
                command,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        url = f"http://{self.host}:{port}"
        try:
            self._wait_ready(name, process, url, deployment_id, version, log, ready_timeout)
        except DeploymentError:
            self._remove_link(name, model_link)
            raise
        if replacing is not None:
            self._terminate(replacing)
        deployment = Deployment(
            name,
            process.pid,
            url,
            port,
            version,
            image,
            str(context / "model"),
            str(log),
            time.time(),
            code_digest,
            deployment_id,
            listener,
            model_link,
        )
        self._state_path(name).write_text(json.dumps(deployment.to_dict(), indent=2))
        return deployment

    @staticmethod
    def _wait_ready(
        name: str,
        process: subprocess.Popen,
        url: str,
        deployment_id: str,
        version: str,
        log: Path,
        timeout: float,
    ) -> None:
        """Until this very process answers ready; during a handover the old one answers too."""
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise DeploymentError(
                    f"{name}: the service exited with {process.returncode}: {log.read_text()[-1500:]}"
                )
            try:
                ready = httpx.get(f"{url}/health/ready", timeout=1)
                answer = ready.json()
                if ready.status_code == 200 and answer.get("deployment") == deployment_id:
                    if answer.get("version") != version:
                        _kill(process)
                        raise DeploymentError(
                            f"{name}: serving version {answer.get('version')}, expected {version}"
                        )
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                _kill(process)
                raise DeploymentError(
                    f"{name}: not ready with version {version} within {timeout:.0f} s: {log.read_text()[-1500:]}"
                )
            time.sleep(0.05)

    @staticmethod
    def _served_version(url: str) -> str | None:
        try:
            return httpx.get(f"{url}/health/ready", timeout=1).json().get("version")
        except (httpx.HTTPError, ValueError):
            return None

    def swap_model(
        self, name: str, context: Path, version: str, image: str, timeout: float = 30
    ) -> Deployment:
        """Point running deployment ``name`` at another release; the process stays, no request fails.

        Waits until the service reports a version other than the one it had (the new one, or a
        wrong one that the smoke test will catch); if it never does (it refused the release),
        the link is moved back and DeploymentError says so.
        """
        current = self.get(name)
        if current is None:
            raise DeploymentError(f"{name}: no running deployment to swap")
        if not current.model_link:
            raise DeploymentError(
                f"{name}: serves its release folder directly; it can be replaced, not swapped"
            )
        link = Path(current.model_link)
        previous_target = Path(os.path.realpath(link))
        before = self._served_version(current.url)  # what it really serves, not what was recorded
        point_link(link, context / "model")
        deadline = time.monotonic() + timeout
        while True:
            served = self._served_version(current.url)
            if served is not None and (served == version or served != before):
                break
            if time.monotonic() > deadline:
                point_link(link, previous_target)
                raise DeploymentError(
                    f"{name}: still serving version {before} {timeout:.0f} s after the swap to "
                    f"version {version} (the service refused it; see {current.log}); link moved back"
                )
            time.sleep(0.1)
        swapped = Deployment(
            **{**current.to_dict(), "version": version, "image": image, "model_dir": str(context / "model")}
        )
        self._state_path(name).write_text(json.dumps(swapped.to_dict(), indent=2))
        return swapped

    def release(
        self,
        name: str,
        context: Path,
        code_digest: str,
        version: str,
        image: str,
        port: int,
        ready_timeout: float = 90,
    ) -> tuple[Deployment, str]:
        """Replace what serves on ``port`` without failing a request.

        Only the model changed: the running process swaps it in. The serving code changed: a new
        process from the new context takes over the listening socket, then the old one drains.
        """
        current = self.get(name)
        if current is not None and current.port == port:
            if current.code_digest == code_digest and current.model_link:
                return self.swap_model(name, context, version, image), "model swap"
            if current.listener:
                deployment = self.deploy(
                    name,
                    context,
                    version,
                    image,
                    port,
                    ready_timeout,
                    code_digest,
                    linked=True,
                    replacing=current,
                )
                return deployment, "process handover (the serving code changed)"
        mode = "new process" if current is None else "restart (moved to another port)"
        deployment = self.deploy(name, context, version, image, port, ready_timeout, code_digest, linked=True)
        return deployment, mode


def point_link(link: Path, target: Path) -> None:
    """Move a symlink atomically (rename over it): readers see the old target or the new one."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
    tmp.symlink_to(target)
    os.replace(tmp, link)
