"""One run of a serial stage (training, release) at a time, whoever started it.

The run queue's tag limits see only the runs it launches; a CLI ``promote`` runs in its own
process. So the runs hold a file lock per stage themselves, through the ``stage_lock`` resource
every asset of those stages requires (set up once per run with the in-process executor): a
daemon, UI or CLI run waits for the one in progress. The CLI takes the same lock around its
decision and its run; the in-process run it starts (in the same thread) re-enters it instead of
waiting for itself.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from mlops_assets.core.instance import SERIAL_STAGES, STAGE_TAG
from mlops_assets.core.keys import STAGE_OF

# Lock files this thread holds, with how many times it entered each: the in-process run it starts
# (executed in the same thread) re-enters them; another thread waits, as another process does.
_THIS_THREAD = threading.local()


def _held() -> dict[Path, int]:
    if not hasattr(_THIS_THREAD, "held"):
        _THIS_THREAD.held = {}
    return _THIS_THREAD.held


# Longest a run waits for a stage another run holds: a training run on a big snapshot takes long,
# a stuck holder must not hold every later run forever without a word.
WAIT_SECONDS = 6 * 3600.0


class StageBusy(dg.Failure):
    """The stage stayed held past the wait; the message says by whom and since when."""


def _acquire(handle, path: Path, stage: str, timeout: float, waiting: Callable[[str], None] | None) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    handle.seek(0)
    holder = handle.read().strip() or "another process"
    if waiting is not None:
        waiting(holder)
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                holder = handle.read().strip() or holder
                raise StageBusy(
                    f"the {stage} stage is still held by {holder} after waiting {timeout:.0f} s "
                    f"({path}); stop that run, or remove the lock file if its process is gone"
                ) from None


@contextmanager
def hold_stage(
    lock_dir: Path,
    stage: str,
    holder: str,
    waiting: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> Iterator[None]:
    """Hold ``stage``'s lock; ``waiting`` hears who holds it, if someone else does. Waits at most
    ``timeout`` seconds (default WAIT_SECONDS), then raises StageBusy naming the holder."""
    path = Path(lock_dir).resolve() / f"{stage}.lock"
    held = _held()
    if held.get(path):
        held[path] += 1
        try:
            yield
        finally:
            held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        _acquire(handle, path, stage, WAIT_SECONDS if timeout is None else timeout, waiting)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder} (pid {os.getpid()}, since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)\n")
        handle.flush()
        held[path] = 1
        try:
            yield
        finally:
            del held[path]
            fcntl.flock(handle, fcntl.LOCK_UN)


def command_line() -> str:
    return " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]


def serial_stages(run: dg.DagsterRun) -> list[str]:
    """The serial stages a run touches: its stage tag's, and those of the assets it selected (a
    run launched from the UI's asset graph may span stages). Sorted: locks are always taken in
    the same order, so two runs never wait on each other."""
    stages = {run.tags.get(STAGE_TAG)} | {STAGE_OF.get(key) for key in run.asset_selection or ()}
    return sorted(stage for stage in stages if stage in SERIAL_STAGES)


class StageLock(dg.ConfigurableResource):
    """Held for the whole run (see the module's doc); assets of the serial stages require it."""

    lock_dir: str
    wait_seconds: float = WAIT_SECONDS
    _held: ExitStack | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        if run is None:
            return
        self._held = ExitStack()
        try:
            for stage in serial_stages(run):

                def say(holder: str, stage: str = stage) -> None:
                    context.log.warning(f"waiting for the {stage} stage: held by {holder}")

                self._held.enter_context(
                    hold_stage(Path(self.lock_dir), stage, f"run {run.run_id}", say, self.wait_seconds)
                )
        except BaseException:
            self._held.close()  # the stages taken before the one that stayed busy: let them go
            raise

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._held is not None:
            self._held.close()
