"""`mlops-assets-supervise`: one per local deployment; owns the listening socket, keeps the service up.

The service (a process from the release's venv, or a container of the release's image) inherits
the socket as file descriptor 3 and is restarted whenever it dies, on the same socket: clients
queue in the kernel meanwhile instead of being refused. A successor supervisor receives the
socket from this one (``listener.py``), so a replacement never closes the port. An
engine's own restart policy cannot do this: it would restart a container without the socket.

With ``--commit`` it becomes the deployment on its own once its service answers ready, and stops
the predecessor that handed it the socket (``takeover.py``): a release interrupted midway leaves one
supervisor serving, never two. Until then a service that exits is not restarted: it gave up.

SIGTERM (or SIGINT) stops it: the service is sent SIGTERM, drains, exits, then so does this.
It writes ``status.json`` (its pid, the service's pid, starts and exit codes) for the target, and
keeps mirrored files current (``--mirror``: the scoring keys, copied for a container's uid each
time the operator edits them, so a key rotation reaches it as it reaches a process), and keeps
the deployment's log bounded (``--log``, ``--log-max-bytes``: copy and truncate).
No Dagster and no service code here: it starts in a fraction of a second.
"""

import argparse
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mlops_assets.hosting.listener import ListenerError, bind_listener, receive_listener, share_listener
from mlops_assets.hosting.liveness import Liveness
from mlops_assets.hosting.takeover import Takeover

LISTEN_FD = 3  # where systemd socket activation puts it too; podman --preserve-fds 1 passes it on
GAVE_UP = 3  # the exit code of a supervisor whose service never became the deployment
log = logging.getLogger("mlops_assets.supervisor")


def _at_listen_fd(sock) -> int:
    if sock.fileno() == LISTEN_FD:
        sock.set_inheritable(True)
        return LISTEN_FD
    try:
        os.fstat(LISTEN_FD)
    except OSError:
        os.dup2(sock.fileno(), LISTEN_FD, inheritable=True)
        return LISTEN_FD
    raise ListenerError(f"file descriptor {LISTEN_FD} is taken; start the supervisor with only 0-2 open")


class Supervisor:
    def __init__(
        self,
        command: list[str],
        status_path: Path,
        first_delay: float = 0.2,
        max_delay: float = 10.0,
        stable_seconds: float = 30.0,
        mirrors: list[tuple[Path, Path]] | None = None,
        mirror_owner: int | None = None,
        log_path: Path | None = None,
        log_max_bytes: int = 0,
        takeover: Takeover | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.command = command
        self.takeover = takeover
        self.liveness = liveness
        self.gave_up = ""
        self._service_exited = threading.Event()
        self._lock = threading.Lock()  # a stop and a commit never interleave
        self.log_path, self.log_max_bytes = log_path, log_max_bytes
        self.mirrors = mirrors or []
        self.mirror_owner = mirror_owner
        self._mirrored: dict[Path, tuple[int, int]] = {}
        self.status_path = status_path
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.stable_seconds = stable_seconds  # a service that ran this long restarts without delay
        self.stopping = threading.Event()
        self.service: subprocess.Popen | None = None
        self.starts = 0
        self.exits: list[int] = []

    def stop(self, *_: object) -> None:
        with self._lock:
            self.stopping.set()
        service = self.service
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)

    def _take_over(self) -> None:
        takeover = self.takeover
        if takeover.wait_ready(self._service_exited, self.stopping):
            with self._lock:
                if not self.stopping.is_set():
                    try:
                        takeover.commit()
                    except OSError as exc:
                        takeover.gave_up = f"could not write the deployment's record: {exc}"
            if takeover.committed.is_set():
                log.info("ready: the deployment is this supervisor's now; stopping the predecessor")
                self._write_status()
                takeover.retire_predecessor()
                self._write_status()
                return
        if not self._service_exited.is_set():
            self.gave_up = self.gave_up or takeover.gave_up or "stopped before it was ready"
            log.warning("gave up: %s", self.gave_up)
            self.stop()

    def _write_status(self) -> None:
        status = {
            "supervisor_pid": os.getpid(),
            "service_pid": self.service.pid if self.service else None,
            "starts": self.starts,
            "exits": self.exits[-20:],
            "stopping": self.stopping.is_set(),
            "committed": self.takeover is None or self.takeover.committed.is_set(),
            "gave_up": self.gave_up,
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.status_path)

    def _wait_mirroring(self, service: subprocess.Popen) -> int:
        while True:
            try:
                return service.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                self.mirror()
                self.rotate_log()

    def rotate_log(self) -> None:
        """Past ``log_max_bytes``, the log (this process's and the service's stdout and stderr,
        opened for appending) is copied to ``<log>.1`` and truncated in place: the writers go on
        at its new end, so at most two sizes' worth of disk. What is written between the copy and
        the truncation (well under a second of output) is lost; no process is restarted."""
        if self.log_path is None or self.log_max_bytes <= 0:
            return
        try:
            if self.log_path.stat().st_size <= self.log_max_bytes:
                return
            kept = self.log_path.with_name(self.log_path.name + ".1")
            staging = kept.with_name(f".{kept.name}.tmp")
            shutil.copyfile(self.log_path, staging)
            os.replace(staging, kept)
            os.truncate(self.log_path, 0)
        except OSError as exc:
            log.warning("could not rotate %s: %s", self.log_path, exc)

    def mirror(self) -> None:
        """Copy each source whose size or mtime changed, atomically (a reader sees old or new)."""
        for source, target in self.mirrors:
            try:
                found = source.stat()
                signature = (found.st_mtime_ns, found.st_size)
                if self._mirrored.get(source) == signature:
                    continue
                write_read_only(target, source.read_bytes(), self.mirror_owner)
                self._mirrored[source] = signature
            except FileNotFoundError:
                continue  # not written yet (the first key is made on first use): copied once it is
            except OSError as exc:
                log.warning("could not mirror %s to %s: %s", source, target, exc)

    def run(self) -> int:
        self.mirror()
        if self.takeover is not None:
            threading.Thread(target=self._take_over, name="takeover", daemon=True).start()
        if self.liveness is not None:
            watch = self.liveness.watch
            threading.Thread(
                target=watch, args=(lambda: self.service, self.stopping), name="liveness", daemon=True
            ).start()
        delay = self.first_delay
        while not self.stopping.is_set():
            started = time.monotonic()
            self.service = subprocess.Popen(
                self.command, pass_fds=(LISTEN_FD,), stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
            self.starts += 1
            self._write_status()
            if self.stopping.is_set():  # SIGTERM arrived while it was being started
                self.service.send_signal(signal.SIGTERM)
            code = self._wait_mirroring(self.service)
            if self.stopping.is_set():
                break
            self.exits.append(code)
            if self.takeover is not None and not self.takeover.committed.is_set():
                self.gave_up = f"the service exited with {code} before it was ready"
                self._service_exited.set()
                log.warning("gave up: %s", self.gave_up)
                break
            self._write_status()
            delay = self.first_delay if time.monotonic() - started > self.stable_seconds else delay
            log.warning("the service exited with %d; restarting it in %.1f s", code, delay)
            self.stopping.wait(delay)
            delay = min(delay * 2, self.max_delay)
        self.service = None
        self._write_status()
        return GAVE_UP if self.gave_up else 0


def write_read_only(path: Path, data: bytes, owner: int | None = None) -> None:
    """``data`` as ``path``, mode 0400 (and owned by uid and gid ``owner``), replaced atomically:
    a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if owner is not None:
        os.chown(tmp, owner, owner)
    os.replace(tmp, path)


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # loaded before any fork: the child only calls it
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM it when the supervisor dies, however (a SIGKILL included), so no
    service outlives its supervisor holding the socket."""
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mlops-assets-supervise",
        description="Own a deployment's listening socket and keep its service running on it.",
    )
    parser.add_argument(
        "--listen", metavar="HOST:PORT", required=True, help="bound when nothing is taken over"
    )
    parser.add_argument(
        "--take-from", metavar="SOCKET", help="the predecessor's unix socket (@name: abstract)"
    )
    parser.add_argument(
        "--share-at", metavar="SOCKET", required=True, help="offer the socket to a successor here"
    )
    parser.add_argument("--status", type=Path, required=True, help="status.json to write")
    parser.add_argument(
        "--mirror", action="append", default=[], metavar="SOURCE:TARGET", help="keep TARGET a copy of SOURCE"
    )
    parser.add_argument("--mirror-owner", type=int, help="uid and gid of the mirrored copies")
    parser.add_argument("--log", type=Path, help="the file stdout and stderr append to (rotated)")
    parser.add_argument("--log-max-bytes", type=int, default=0, help="rotate --log past this size (0: never)")
    parser.add_argument(
        "--commit",
        metavar="PENDING:RECORD",
        help="once the service answers ready as --deployment-id and --expect-version, write PENDING "
        "(with this pid) as RECORD and stop the predecessor; give up past --ready-timeout",
    )
    parser.add_argument("--deployment-id", default="")
    parser.add_argument(
        "--probe",
        metavar="SECONDS:MISSES",
        help="ask /health/live every SECONDS (waiting as long), and kill the service after MISSES "
        "unanswered in a row (it is restarted); needs --deployment-id",
    )
    parser.add_argument("--expect-version", default="")
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    parser.add_argument(
        "--predecessor-stop-seconds", type=float, default=75.0, help="SIGTERM, then SIGKILL after this"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the service's command line")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("the service's command is missing (after --)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO,
        format='{"time":"%(asctime)s","level":"%(levelname)s","pid":%(process)d,'
        '"logger":"%(name)s","message":"%(message)s"}',
    )
    mirrors = [tuple(Path(part) for part in pair.split(":", 1)) for pair in args.mirror]
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    supervisor = Supervisor(
        args.command,
        args.status,
        mirrors=mirrors,
        mirror_owner=args.mirror_owner,
        log_path=args.log,
        log_max_bytes=args.log_max_bytes,
    )
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        sock, predecessor = None, None
        if args.take_from:
            try:
                sock, predecessor = receive_listener(args.take_from)
            except ListenerError as exc:
                log.warning("%s; binding %s instead", exc, args.listen)
        if sock is None:
            sock = bind_listener(host, int(port))
        _at_listen_fd(sock)
        share_listener(sock, args.share_at)
    except ListenerError as exc:
        print(f"mlops-assets-supervise: {exc}", file=sys.stderr)
        return 2
    if args.probe and args.deployment_id:
        seconds, misses = args.probe.split(":", 1)
        supervisor.liveness = Liveness(
            host, int(port), args.deployment_id, float(seconds), float(seconds), int(misses)
        )
    if args.commit:
        pending, record = args.commit.split(":", 1)
        supervisor.takeover = Takeover(
            host,
            int(port),
            args.deployment_id,
            args.expect_version,
            Path(pending),
            Path(record),
            args.ready_timeout,
            predecessor,
            args.take_from or "",
            args.predecessor_stop_seconds,
        )
    return supervisor.run()
