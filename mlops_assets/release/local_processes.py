"""Local deployments on 127.0.0.1: start, swap, hand over, stop, list.

Each deployment is a supervisor (``supervisor.py``) that owns the listening socket and runs the
service on it, as a process or a container (``runtimes.py``). Its state file (supervisor pid, url,
version, image) is MLOPS_HOME/deployments/NAME.json, its folder (status, spill, model link, keys)
MLOPS_HOME/deployments/NAME/ID/. No Dagster here: `mlops-assets deployments` and `down` read and
stop them without importing it.
"""

import contextlib
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

from mlops_assets.release.deployments import DeploymentError, unreadiness
from mlops_assets.release.runtimes import (
    ContainerRuntime,
    ProcessRuntime,
    give_tree_to_service_user,
    runtime_of,
)

SERVE_MARKER = "mlops-assets"  # in the supervisor's command line (mlops-assets-supervise) too
SUPERVISE = "mlops-assets-supervise"


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


def read_status(folder: Path) -> dict:
    """A supervisor's status.json: the service's pid, its starts and exit codes ({} before any)."""
    try:
        return json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return SERVE_MARKER.encode() in cmdline  # never signal a recycled pid that is not ours


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the supervisor and a service process alike
    process.wait()


def _require_free_port(host: str, port: int, name: str, wait: float = 0.0) -> None:
    """``wait``: what was just stopped may hold the port a moment longer (a container's conmon
    closes its copy of the socket only once the engine has cleaned the container up)."""
    deadline = time.monotonic() + wait
    while True:
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
                return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise DeploymentError(
                        f"{name}: port {port} on {host} is already in use ({exc.strerror}); stop what "
                        f"holds it or set MLOPS_{name.upper()}_PORT to a free port"
                    ) from None
        time.sleep(0.1)


class LocalTarget:
    def __init__(self, home: Path, host: str = "127.0.0.1") -> None:
        self.home = home
        self.host = host
        self.state_dir = home / "deployments"

    def _state_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def get(self, name: str) -> Deployment | None:
        path = self._state_path(name)
        if not path.exists():
            return None
        try:
            deployment = Deployment(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        if not _alive(deployment.pid):  # its supervisor died without being stopped: lost
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, self._lost_path(name))
            self._runtime(deployment).remove(deployment.container)
            return None
        return deployment

    def _lost_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.lost"

    def lost(self, name: str) -> Deployment | None:
        """What served as ``name`` until its supervisor died, if nobody stopped or replaced it since."""
        self.get(name)  # a supervisor that died since the last look is recorded now
        try:
            return Deployment(**json.loads(self._lost_path(name).read_text()))
        except FileNotFoundError:
            return None

    def list(self) -> list[Deployment]:
        found = (self.get(p.stem) for p in sorted(self.state_dir.glob("*.json")))
        return [d for d in found if d is not None]

    def stop(self, name: str, timeout: float = 30) -> bool:
        deployment = self.get(name)
        self._state_path(name).unlink(missing_ok=True)
        self._lost_path(name).unlink(missing_ok=True)  # stopped on purpose: nothing to bring back
        if deployment is None:
            return False
        self._terminate(deployment, timeout)
        return True

    def _runtime(self, deployment: Deployment) -> ProcessRuntime | ContainerRuntime:
        return runtime_of(deployment.runtime, self.home, deployment.engine)

    def _terminate(self, deployment: Deployment, timeout: float = 30) -> None:
        """SIGTERM to the supervisor: the service drains and flushes its request log, then both exit."""
        os.kill(deployment.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(deployment.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(deployment.pid):
            os.killpg(deployment.pid, signal.SIGKILL)
        self._runtime(deployment).remove(deployment.container)
        self._clear_folder(Path(deployment.folder) if deployment.folder else None)

    def _clear_folder(self, folder: Path | None) -> None:
        """All but undelivered scoring-log records, which the next deployment of the name delivers."""
        if folder is None or folder.parent.parent != self.state_dir:
            return
        spill = folder / "spill"
        if spill.exists() and any(p.is_file() for p in spill.rglob("*")):
            for child in folder.iterdir():
                if child != spill:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def _adopt_spill(self, name: str, folder: Path, runtime: ProcessRuntime | ContainerRuntime) -> None:
        """Move what earlier deployments of ``name`` could not deliver into ``folder``'s spill."""
        moved = 0
        for earlier in sorted((self.state_dir / name).iterdir()):
            if earlier == folder or not (earlier / "spill").is_dir():
                continue
            for spilled in sorted(p for p in (earlier / "spill").rglob("*.jsonl") if p.is_file()):
                target = folder / "spill" / spilled.relative_to(earlier / "spill")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(spilled, target)  # same file system: atomic, a writer sees it whole
                moved += 1
            shutil.rmtree(earlier, ignore_errors=True)
        if moved and isinstance(runtime, ContainerRuntime):
            give_tree_to_service_user(folder / "spill")

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
        runtime: ProcessRuntime | ContainerRuntime | None = None,
    ) -> Deployment:
        """Start a supervisor running this release's service as deployment ``name``; fail (and
        clean up) unless ready.

        Without ``replacing``, whatever ran as ``name`` is stopped first and the port must be free.
        With it, the new supervisor takes over ``replacing``'s listening socket, and ``replacing``
        is drained and stopped only once the new service is ready: a failed start leaves it serving.
        ``linked`` (processes) serves through a symlink of this deployment's own, so later model
        swaps move it. A container serves the model inside ``image``.
        """
        runtime = runtime or ProcessRuntime(self.home)
        if replacing is None:
            stopped = self.stop(name)
            _require_free_port(self.host, port, name, wait=15.0 if stopped else 0.0)
        deployment_id = uuid.uuid4().hex
        folder = self.state_dir / name / deployment_id
        folder.mkdir(parents=True)
        serve_from, model_link = context / "model", ""
        if linked and isinstance(runtime, ProcessRuntime):
            link = folder / "model"
            point_link(link, context / "model")
            serve_from, model_link = link, str(link)
        listener = self._listener_address(name, deployment_id)
        log = self.state_dir / f"{name}.log"
        try:
            service = runtime.service(folder, deployment_id, context, image, serve_from)
        except (OSError, subprocess.CalledProcessError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise DeploymentError(f"{name}: could not prepare the service: {exc}") from None
        command = [str(Path(sys.executable).parent / SUPERVISE), "--listen", f"{self.host}:{port}"]
        command += ["--share-at", listener, "--status", str(folder / "status.json"), *service.supervisor_args]
        if replacing is not None and replacing.listener:
            command += ["--take-from", replacing.listener]
        with open(log, "a") as handle:
            process = subprocess.Popen(
                [*command, "--", *service.command],
                env=service.environment,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        url = f"http://{self.host}:{port}"
        try:
            self._wait_ready(name, process, folder, url, deployment_id, version, log, ready_timeout)
        except DeploymentError:
            _kill(process)
            runtime.remove(service.container)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if replacing is not None:
            self._terminate(replacing)
        self._adopt_spill(name, folder, runtime)
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
            runtime.name,
            runtime.engine_name,
            service.container,
            str(folder),
        )
        self._state_path(name).write_text(json.dumps(deployment.to_dict(), indent=2))
        self._lost_path(name).unlink(missing_ok=True)
        return deployment

    @staticmethod
    def _wait_ready(
        name: str,
        process: subprocess.Popen,
        folder: Path,
        url: str,
        deployment_id: str,
        version: str,
        log: Path,
        timeout: float,
    ) -> None:
        """Until this very service answers ready; during a handover the old one answers too.

        A service that exits before it is ready (a wrong entry point, a crash on start) fails at
        once, though its supervisor would restart it."""
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise DeploymentError(
                    f"{name}: the supervisor exited with {process.returncode}: {_tail(log)}"
                )
            exits = read_status(folder).get("exits")
            if exits:
                raise DeploymentError(
                    f"{name}: the service exited with {exits[0]} before it was ready: {_tail(log)}"
                )
            try:
                ready = httpx.get(f"{url}/health/ready", timeout=1)
                answer = ready.json()
                if ready.status_code == 200 and answer.get("deployment") == deployment_id:
                    if answer.get("version") != version:
                        raise DeploymentError(
                            f"{name}: serving version {answer.get('version')}, expected {version}"
                        )
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"{name}: not ready with version {version} within {timeout:.0f} s: {_tail(log)}"
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
        runtime: ProcessRuntime | ContainerRuntime | None = None,
    ) -> tuple[Deployment, str]:
        """Replace what serves on ``port`` without failing a request.

        Processes: only the model changed, the running service swaps it in; the serving code
        changed, a new supervisor takes over the listening socket, then the old service drains.
        Containers: a new image always hands over (the model is inside the image).
        """
        runtime = runtime or ProcessRuntime(self.home)
        current = self.get(name)
        if current is not None and current.port == port and current.runtime == runtime.name:
            if runtime.name == "container" and current.image == image:
                return current, "unchanged (this image already serves)"
            if runtime.name == "process" and current.code_digest == code_digest and current.model_link:
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
                    runtime=runtime,
                )
                how = "another image" if runtime.name == "container" else "the serving code changed"
                return deployment, f"{runtime.name} handover ({how})"
        mode = "new " + runtime.name if current is None else "restart (another port or runtime)"
        deployment = self.deploy(
            name, context, version, image, port, ready_timeout, code_digest, linked=True, runtime=runtime
        )
        return deployment, mode


def _tail(log: Path, size: int = 1500) -> str:
    return log.read_text(errors="replace")[-size:]


def point_link(link: Path, target: Path) -> None:
    """Move a symlink atomically (rename over it): readers see the old target or the new one."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
    tmp.symlink_to(target)
    os.replace(tmp, link)
