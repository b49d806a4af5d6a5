"""The listening socket of a long-lived deployment, handed from one holder to the next.

A handover (the serving code or image changed) must not refuse or reset a connection. Two
processes bound separately with SO_REUSEPORT each get their own accept queue, and whatever is
queued on the old one is reset when it closes. So the successor receives its predecessor's
listening socket itself, as SCM_RIGHTS over a unix socket (the way HAProxy's seamless reload and
Envoy's hot restart do it): one socket and one queue, accepted from by both services until the
old one has drained away (``drain.py``). The holders are the deployments' supervisors
(``hosting/supervisor.py``); the service inherits the socket as a file descriptor.
"""

import logging
import os
import socket
import struct
import threading
from pathlib import Path

log = logging.getLogger("mlops_assets.serving")


class ListenerError(RuntimeError):
    """The listening socket could not be bound or received; the message says which and why."""


def bind_listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def inherited_listener(fd: int) -> socket.socket:
    """The listening socket a supervisor passed down as ``fd``."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenerError(f"file descriptor {fd} is not a socket: {exc.strerror}") from None
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ListenerError(f"file descriptor {fd} is not a listening socket")
    return sock


def _unix_address(address: str) -> str:
    """``@name`` is a Linux abstract socket: no file to clean up, no 108-byte path limit."""
    return "\0" + address[1:] if address.startswith("@") else address


def receive_listener(address: str, timeout: float = 5.0) -> tuple[socket.socket, int]:
    """The listening socket shared at ``address`` by the process being replaced, and that
    process's pid (its credentials on the connection: it is the one to stop once replaced)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
        control.settimeout(timeout)
        try:
            control.connect(_unix_address(address))
            sharer, _, _ = _peer_credentials(control)
            _, fds, _, _ = socket.recv_fds(control, 16, 1)
        except OSError as exc:
            raise ListenerError(f"no listening socket from {address}: {exc}") from None
    if not fds:
        raise ListenerError(f"{address} answered without a socket")
    sock = socket.socket(fileno=fds[0])
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.close()
        raise ListenerError(f"{address} handed over a socket that is not listening")
    sock.set_inheritable(True)
    return sock, sharer


def share_listener(sock: socket.socket, address: str) -> threading.Thread:
    """Hand ``sock`` to any process of the same user that connects to ``address``.

    Peers are checked by their credentials (SO_PEERCRED), which also covers abstract sockets,
    which have no file mode.
    """
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if not address.startswith("@"):
        Path(address).parent.mkdir(parents=True, exist_ok=True)
        Path(address).unlink(missing_ok=True)
    previous_umask = os.umask(0o177)  # a socket file is created 0600
    try:
        control.bind(_unix_address(address))
    except OSError as exc:
        control.close()
        raise ListenerError(f"cannot share the listening socket at {address}: {exc.strerror}") from None
    finally:
        os.umask(previous_umask)
    control.listen(4)

    def serve_forever() -> None:
        while True:
            try:
                peer, _ = control.accept()
            except OSError:
                return
            with peer:
                pid, uid, _ = _peer_credentials(peer)
                if uid != os.getuid():
                    log.warning("refused the listening socket to pid %d of uid %d", pid, uid)
                    continue
                socket.send_fds(peer, [b"L"], [sock.fileno()])
                log.info("handed the listening socket to pid %d", pid)

    thread = threading.Thread(target=serve_forever, name="listener-share", daemon=True)
    thread.start()
    return thread


def _peer_credentials(peer: socket.socket) -> tuple[int, int, int]:
    raw = peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)
