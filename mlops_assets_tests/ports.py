"""A port for a test's server that nothing else takes before the server binds it.

A port the kernel hands out for ``bind(0)`` comes from its ephemeral range, the same range every
outgoing connection on the machine takes its source port from: between a test picking it and its
server binding it (seconds, for a release), a client (another test's, a container engine's) can
take it, and the server fails with "address in use". So ports come from below that range, from a
band of its own per pytest-xdist worker, at random, and bindable when picked. A port is handed out
once per process until the band runs out: a test that picks several before its servers bind them
(production, QA, the UI) never gets the same one twice.
"""

from __future__ import annotations

import os
import random
import socket

BAND = 1500  # ports per xdist worker
LOWEST = 20000
_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    start = LOWEST + (int(worker) if worker.isdigit() else 0) * BAND
    end = min(start + BAND, _ephemeral_low())
    if end <= start:  # a machine whose ephemeral range starts lower: the kernel's pick, as before
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]
    unused = [port for port in range(start, end) if port not in _HANDED_OUT]
    if len(unused) < 100:  # a process that took nearly the whole band: start over
        _HANDED_OUT.clear()
        unused = list(range(start, end))
    for port in random.sample(unused, min(100, len(unused))):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port in {start}..{end - 1}")
