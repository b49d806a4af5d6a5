"""`mlops-assets-supervise`: one per local deployment; owns the listening socket, keeps the service up.

The service (a process from the release's venv, or a container of the release's image) inherits
the socket as file descriptor 3 and is restarted whenever it dies, on the same socket: clients
queue in the kernel meanwhile instead of being refused. A successor supervisor receives the
socket from this one (``serving/listener.py``), so a replacement never closes the port. An
engine's own restart policy cannot do this: it would restart a container without the socket.

SIGTERM (or SIGINT) stops it: the service is sent SIGTERM, drains, exits, then so does this.
It writes ``status.json`` (its pid, the service's pid, starts and exit codes) for the target.
No Dagster and no service code here: it starts in a fraction of a second.
"""

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mlops_assets.serving.listener import ListenerError, bind_listener, receive_listener, share_listener

LISTEN_FD = 3  # where systemd socket activation puts it too; podman --preserve-fds 1 passes it on
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
    ) -> None:
        self.command = command
        self.status_path = status_path
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.stable_seconds = stable_seconds  # a service that ran this long restarts without delay
        self.stopping = threading.Event()
        self.service: subprocess.Popen | None = None
        self.starts = 0
        self.exits: list[int] = []

    def stop(self, *_: object) -> None:
        self.stopping.set()
        service = self.service
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)

    def _write_status(self) -> None:
        status = {
            "supervisor_pid": os.getpid(),
            "service_pid": self.service.pid if self.service else None,
            "starts": self.starts,
            "exits": self.exits[-20:],
            "stopping": self.stopping.is_set(),
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.status_path)

    def run(self) -> int:
        delay = self.first_delay
        while not self.stopping.is_set():
            started = time.monotonic()
            self.service = subprocess.Popen(self.command, pass_fds=(LISTEN_FD,), stdin=subprocess.DEVNULL)
            self.starts += 1
            self._write_status()
            if self.stopping.is_set():  # SIGTERM arrived while it was being started
                self.service.send_signal(signal.SIGTERM)
            code = self.service.wait()
            if self.stopping.is_set():
                break
            self.exits.append(code)
            self._write_status()
            delay = self.first_delay if time.monotonic() - started > self.stable_seconds else delay
            log.warning("the service exited with %d; restarting it in %.1f s", code, delay)
            self.stopping.wait(delay)
            delay = min(delay * 2, self.max_delay)
        self.service = None
        self._write_status()
        return 0


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
    supervisor = Supervisor(args.command, args.status)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    host, _, port = args.listen.rpartition(":")
    try:
        sock = None
        if args.take_from:
            try:
                sock = receive_listener(args.take_from)
            except ListenerError as exc:
                log.warning("%s; binding %s instead", exc, args.listen)
        if sock is None:
            sock = bind_listener(host.strip("[]"), int(port))
        _at_listen_fd(sock)
        share_listener(sock, args.share_at)
    except ListenerError as exc:
        print(f"mlops-assets-supervise: {exc}", file=sys.stderr)
        return 2
    return supervisor.run()
