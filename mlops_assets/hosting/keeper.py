"""`mlops-assets keep`: production comes back after its supervisor dies, with no Dagster running.

A supervisor restarts its service; nothing restarted the supervisor itself but the health
sensor, which needs the Dagster daemon (`make dev`). The keeper is one small process per home:
every few seconds it looks at production's record, and when the supervisor it names has died (a
``kill -9``, an OOM kill) it starts the same release again from that record: the same build
context, image, version and port, under the release stage's lock, so it never races a release.
A deployment stopped on purpose (`down`, a release's teardown) has no record left and is left
stopped. The keeper itself is restarted by the host's service manager
(``deploy/systemd/mlops-assets-keeper.service``). No Dagster process is involved.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from mlops_assets.hosting.build_layout import MODEL_DIR
from mlops_assets.hosting.health import DeploymentError
from mlops_assets.hosting.processes import LocalTarget
from mlops_assets.hosting.runtimes import runtime_of
from mlops_assets.hosting.state import Deployment

log = logging.getLogger("mlops_assets.keeper")
KEPT = ("production",)
CHECK_SECONDS = 5.0


def bring_back(target: LocalTarget, lost: Deployment) -> Deployment:
    """Start ``lost``'s release again as it ran: same context, version, image, port and runtime."""
    context = Path(lost.model_dir)
    context = context.parent if context.name == MODEL_DIR else context
    deployment, _ = target.release(
        lost.name,
        context,
        lost.code_digest,
        lost.version,
        lost.image,
        lost.port,
        runtime=runtime_of(lost.runtime, target.home, lost.engine),
    )
    return deployment


def keep(target: LocalTarget, lock, stopping: threading.Event, every: float = CHECK_SECONDS) -> None:
    """Until ``stopping``: bring back each kept deployment whose supervisor died. ``lock()``: a
    context manager holding the release stage (a release in progress is waited for). A start
    that fails is tried again at the next look (the lost record is kept here meanwhile: starting
    again removes it from disk), unless the deployment is stopped on purpose meanwhile (a start
    that failed its readiness wait may yet have come up and been stopped since)."""
    waiting: dict[str, tuple[Deployment, str | None]] = {}  # the lost record, the stop mark then
    while not stopping.wait(every):
        for name in KEPT:
            if target.lost(name) is None and name not in waiting:
                continue
            with lock():
                if target.get(name) is not None:  # a release brought it back meanwhile
                    waiting.pop(name, None)
                    continue
                if name in waiting and target.store.stop_mark(name) != waiting[name][1]:
                    waiting.pop(name)
                    log.warning("%s: stopped on purpose while it was being started again: left stopped", name)
                    continue
                lost = target.lost(name) or waiting.get(name, (None, None))[0]
                if lost is None:
                    continue
                waiting.setdefault(name, (lost, target.store.stop_mark(name)))
                log.warning(
                    "%s: version %s lost its supervisor (pid %d); starting it again",
                    name,
                    lost.version,
                    lost.pid,
                )
                try:
                    back = bring_back(target, lost)
                except DeploymentError as exc:
                    log.error(
                        "%s: could not start version %s again (trying again): %s", name, lost.version, exc
                    )
                    continue
                waiting.pop(name)
                log.warning(
                    "%s: version %s serves again at %s (supervisor pid %d)",
                    name,
                    back.version,
                    back.url,
                    back.pid,
                )
