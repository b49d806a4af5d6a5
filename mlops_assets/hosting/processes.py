"""Local deployments on 127.0.0.1, their lifecycle: start, swap, hand over, stop, list.

Each deployment is a supervisor (``supervisor.py``) that owns the listening socket and runs the
service on it, as a process or a container (``runtimes.py``); what is recorded of it lives in
``state.py``. No Dagster here: `mlops-assets deployments` and `down` read and stop them without
importing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from mlops_assets.hosting.build_layout import MODEL_DIR
from mlops_assets.hosting.health import DeploymentError
from mlops_assets.hosting.runtimes import (
    ContainerRuntime,
    ProcessRuntime,
    give_tree_to_service_user,
    runtime_of,
)
from mlops_assets.hosting.state import Deployment, DeploymentStore, point_link, read_status
from mlops_assets.hosting.takeover import failpoint, runs_as, stop_process
from mlops_assets.settings import get_settings
from mlops_assets.storage.spill import waiting_name

SERVE_MARKER = "mlops-assets"  # in the supervisor's command line (mlops-assets-supervise) too
# The release waits this much longer than the supervisor, which gives up at the ready timeout itself.
COMMIT_MARGIN_SECONDS = 15.0
SUPERVISE = "mlops-assets-supervise"


def _alive(deployment: Deployment) -> bool:
    """Whether the deployment's supervisor still runs: its pid, with this deployment's own id in
    its command line (``--share-at`` names it). After a reboot or a long while the pid may belong
    to anything, an mlops-assets process of another home included: never signal one of those."""
    # A record written before deployments had ids: the marker is all there is to go by.
    return runs_as(deployment.pid, deployment.deployment_id or SERVE_MARKER)


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # a supervisor that gave up has exited already
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


@dataclass(frozen=True)
class Supervising:
    pid: int
    name: str
    deployment_id: str

    def describe(self) -> str:
        return f"{self.name}: unrecorded supervisor pid {self.pid} (deployment {self.deployment_id[:12]})"


class LocalTarget:
    def __init__(self, home: Path, host: str = "127.0.0.1") -> None:
        self.home = home
        self.host = host
        self.state_dir = home / "deployments"
        self.store = DeploymentStore(self.state_dir)

    def get(self, name: str) -> Deployment | None:
        deployment = self.store.read(name)
        if deployment is None:
            return None
        if not _alive(deployment):  # its supervisor died without being stopped: lost
            self.store.mark_lost(name)
            self._runtime(deployment).remove(deployment.container)
            return None
        return deployment

    def lost(self, name: str) -> Deployment | None:
        """What served as ``name`` until its supervisor died, if nobody stopped or replaced it since."""
        self.get(name)  # a supervisor that died since the last look is recorded now
        return self.store.read_lost(name)

    def list(self) -> list[Deployment]:
        found = (self.get(name) for name in self.store.names())
        return [d for d in found if d is not None]

    def supervisors(self) -> list[Supervising]:
        """Every supervisor of this home's deployments that runs, recorded or not: found by its
        command line (its ``--status`` lies in this home's deployment folders), not by the records."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                arguments = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # The console script runs as "python …/mlops-assets-supervise …".
            launched = any(argument.endswith(SUPERVISE.encode()) for argument in arguments[:2])
            if not launched or b"--status" not in arguments:
                continue
            status = Path(os.fsdecode(arguments[arguments.index(b"--status") + 1]))
            if self.store.owns(status.parent):
                found.append(Supervising(int(proc.name), status.parent.parent.name, status.parent.name))
        return sorted(found, key=lambda s: s.pid)

    def strays(self, name: str | None = None) -> list[Supervising]:
        """Supervisors no record names: one starting (a release waits on it), or one an interrupted
        release left (it commits or gives up on its own within its ready timeout)."""
        recorded = {(d.pid, d.deployment_id) for d in self.list()}
        return [
            s
            for s in self.supervisors()
            if (s.pid, s.deployment_id) not in recorded and (name is None or s.name == name)
        ]

    def stop_strays(self, name: str | None = None) -> list[Supervising]:
        """Stop what ``strays`` finds, and clear its folder (undelivered records stay, for the next
        deployment of the name)."""
        strays = self.strays(name)
        for stray in strays:
            stop_process(stray.pid, stray.deployment_id, get_settings().service_stop_seconds)
            folder = self.store.folder(stray.name, stray.deployment_id)
            pending = self.store.read_pending(folder)
            if pending is not None:
                self._runtime(pending).remove(pending.container)
            self._clear_folder(folder)
        return strays

    def stop(self, name: str, timeout: float | None = None, *, leave_stopped: bool = True) -> bool:
        """SIGTERM, then SIGKILL after ``timeout`` (default: the service's whole shutdown and a
        margin). ``leave_stopped``: marked as stopped on purpose (a keeper bringing it back gives
        up); a release stopping what it replaces passes False."""
        deployment = self.get(name)
        strays = self.stop_strays(name)  # while the record still tells the deployment from a stray
        self.store.remove(name, mark_stopped=leave_stopped)
        if deployment is None:
            return bool(strays)
        self._terminate(deployment, timeout)
        return True

    def _runtime(self, deployment: Deployment) -> ProcessRuntime | ContainerRuntime:
        return runtime_of(deployment.runtime, self.home, deployment.engine)

    def _terminate(self, deployment: Deployment, timeout: float | None = None) -> None:
        """SIGTERM to the supervisor: the service drains and flushes its request log, then both
        exit; SIGKILL only past the service's own bounded shutdown (Settings.service_stop_seconds)."""
        if timeout is None:
            timeout = get_settings().service_stop_seconds
        stop_process(deployment.pid, deployment.deployment_id or SERVE_MARKER, timeout)
        self._runtime(deployment).remove(deployment.container)
        self._clear_folder(Path(deployment.folder) if deployment.folder else None)

    def _clear_folder(self, folder: Path | None) -> None:
        """All but undelivered scoring-log records, which the next deployment of the name delivers."""
        if folder is None or not self.store.owns(folder):
            return
        spill = folder / "spill"
        if spill.exists() and any(p.is_file() for p in spill.rglob("*")):
            for child in folder.iterdir():
                if child != spill:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def _adopt_spill(self, name: str, folder: Path, runtime: ProcessRuntime | ContainerRuntime) -> None:
        """Move what earlier deployments of ``name`` could not deliver into ``folder``'s spill: the
        files waiting and those a writer had claimed when it stopped (under their waiting name
        again: every writer of those folders is gone by now, so no one else will send them)."""
        moved = 0
        for earlier in self.store.folders(name):
            if earlier == folder:
                continue
            left = self.store.read_pending(earlier)
            if left is not None and runs_as(
                read_status(earlier).get("supervisor_pid") or 0, left.deployment_id
            ):
                continue  # its supervisor still runs: not this deployment's to clear
            if left is not None and left.container:  # left running by a release killed midway
                self._runtime(left).remove(left.container)
            if not (earlier / "spill").is_dir():
                shutil.rmtree(earlier, ignore_errors=True)
                continue
            for spilled in sorted(p for p in (earlier / "spill").rglob("*") if p.is_file()):
                waiting = waiting_name(spilled.name)
                if waiting is None:
                    continue  # half written when its writer stopped: never taken for a whole file
                target = folder / "spill" / spilled.relative_to(earlier / "spill").with_name(waiting)
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
        The new supervisor commits the deployment itself (``takeover.py``): this process may die at
        any of ``takeover.STEPS`` and one supervisor still ends up serving, the record naming it.
        """
        runtime = runtime or ProcessRuntime(self.home)
        if replacing is None:
            stopped = self.stop(name, leave_stopped=False)
            _require_free_port(self.host, port, name, wait=15.0 if stopped else 0.0)
        deployment_id = uuid.uuid4().hex
        folder = self.store.folder(name, deployment_id)
        folder.mkdir(parents=True)
        serve_from, model_link = context / MODEL_DIR, ""
        if linked and isinstance(runtime, ProcessRuntime):
            link = folder / "model"
            point_link(link, context / MODEL_DIR)
            serve_from, model_link = link, str(link)
        listener = self._listener_address(name, deployment_id)
        log = self.store.log(name)
        try:
            service = runtime.service(folder, deployment_id, context, image, serve_from)
        except (OSError, subprocess.CalledProcessError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise DeploymentError(f"{name}: could not prepare the service: {exc}") from None
        url = f"http://{self.host}:{port}"
        pending = Deployment(
            name,
            0,  # the supervisor's, written in by the supervisor itself when it commits
            url,
            port,
            version,
            image,
            str(context / MODEL_DIR),
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
        self.store.write_pending(pending)
        failpoint("prepared", name)
        settings = get_settings()
        command = [str(Path(sys.executable).parent / SUPERVISE), "--listen", f"{self.host}:{port}"]
        command += ["--share-at", listener, "--status", str(folder / "status.json"), *service.supervisor_args]
        command += ["--commit", f"{self.store.pending_path(folder)}:{self.store.record_path(name)}"]
        command += ["--deployment-id", deployment_id, "--expect-version", version]
        command += ["--ready-timeout", str(ready_timeout)]
        command += ["--probe", f"{settings.service_probe_seconds}:{settings.service_probe_misses}"]
        if replacing is not None and replacing.listener:
            command += ["--take-from", replacing.listener]
            command += ["--predecessor-stop-seconds", str(settings.service_stop_seconds)]
        command += ["--log", str(log), "--log-max-bytes", str(settings.service_log_max_bytes)]
        with open(log, "a") as handle:
            process = subprocess.Popen(
                [*command, "--", *service.command],
                env=service.environment,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        failpoint("spawned", name)
        try:
            deployment = self._wait_committed(pending, process, ready_timeout + COMMIT_MARGIN_SECONDS)
        except DeploymentError:
            _kill(process)
            runtime.remove(service.container)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        failpoint("committed", name)
        if replacing is not None:  # its successor has told it to stop: what is left is cleaning up
            self._terminate(replacing)
        failpoint("retired", name)
        self._adopt_spill(name, folder, runtime)
        self.store.forget_lost(name)
        failpoint("settled", name)
        return deployment

    def _wait_committed(self, pending: Deployment, process: subprocess.Popen, timeout: float) -> Deployment:
        """Until the new supervisor has made the deployment its own (takeover.py): its service
        answered ready as this deployment and version, and the record names it. During a
        handover the old service answers too meanwhile. A supervisor that gave up (its service
        exited before it was ready, a wrong version, its deadline) says why in its status."""
        name, log = pending.name, Path(pending.log)
        deadline = time.monotonic() + timeout
        while True:
            recorded = self.store.read(name)
            if recorded is not None and recorded.deployment_id == pending.deployment_id:
                return recorded
            if process.poll() is not None:
                reason = read_status(Path(pending.folder)).get("gave_up")
                reason = reason or f"the supervisor exited with {process.returncode}"
                raise DeploymentError(f"{name}: {reason}: {_tail(log)}")
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"{name}: not ready with version {pending.version} within {timeout:.0f} s: {_tail(log)}"
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
        point_link(link, context / MODEL_DIR)
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
            **{**current.to_dict(), "version": version, "image": image, "model_dir": str(context / MODEL_DIR)}
        )
        self.store.write(swapped)
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
        self.stop_strays(name)  # left by an interrupted release: this one decides what serves
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
