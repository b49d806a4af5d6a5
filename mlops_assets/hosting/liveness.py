"""A supervisor's liveness probe: a service that stops answering is killed, and so restarted.

The supervisor restarts a service that exits; one that hangs (``kill -STOP``, a deadlock, a loop
that never yields) keeps its process and the socket while clients time out. So the supervisor
asks ``/health/live`` every ``interval`` seconds and kills the service after ``misses`` probes in
a row got no answer within ``timeout``. ``/health/live`` is answered on the event loop and nothing
else: a request log flush runs in a thread and never delays it, and the longest legitimate stall
of the loop (a 10,000-row request: about a second here) is far inside the defaults (5 s a probe,
3 in a row: a hang is acted on within 20 s). A service is probed only once it has answered since
it started (starting up is the ready timeout's business), and an answer from another deployment's
service (a predecessor sharing the socket during a handover) counts neither way. Stdlib only.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from mlops_assets.hosting.takeover import health_answer

log = logging.getLogger("mlops_assets.supervisor")

PROBE_INTERVAL_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 5.0
PROBE_MISSES = 3


def live_as(host: str, port: int, timeout: float) -> str | None:
    """The deployment id ``/health/live`` answers with ("" for a service without one), or None
    when no answer came within ``timeout``."""
    answer = health_answer(host, port, "/health/live", timeout)
    return None if answer is None else (answer.get("deployment") or "")


@dataclass
class Liveness:
    host: str
    port: int
    deployment_id: str
    interval: float = PROBE_INTERVAL_SECONDS
    timeout: float = PROBE_TIMEOUT_SECONDS
    misses: int = PROBE_MISSES

    def watch(self, current_service, stopping: threading.Event) -> None:
        """Until ``stopping``: probe, and kill the service ``current_service()`` returns once it
        has missed ``misses`` probes in a row after answering at least once."""
        answered: int | None = None  # the pid of the service that answered since it started
        missed = 0
        while not stopping.wait(self.interval):
            service = current_service()
            if service is None or service.poll() is not None:
                continue
            found = live_as(self.host, self.port, self.timeout)
            if found == self.deployment_id:
                answered, missed = service.pid, 0
            elif found is None and answered == service.pid:
                missed += 1
                if missed >= self.misses and not stopping.is_set():
                    log.warning(
                        "the service (pid %d) missed %d liveness probes of %.0f s in a row: killing it",
                        service.pid,
                        missed,
                        self.timeout,
                    )
                    service.kill()  # the supervisor's loop sees it exit and starts it again
                    answered, missed = None, 0
