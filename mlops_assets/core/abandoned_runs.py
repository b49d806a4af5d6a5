"""In-process runs (the CLI, the demo) whose process died mid-run: marked failed, never left STARTED.

A run the daemon launched is watched by Dagster's run monitoring; one executed in this process is
not: `mlops-assets promote` killed mid-release left its run STARTED for good. Each in-process run is
tagged with its host and its process's identity (pid and start time, so a reused pid is not taken
for it), and the next in-process run on the host fails those whose process is gone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg

PROCESS_TAG = "mlops/process"  # host:pid:start ticks of the process executing the run
IN_FLIGHT = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def process_identity(pid: int) -> str | None:
    """``host:pid:start`` of a running process (start: clock ticks after boot), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    if fields[0] == "Z":
        return None  # exited, not yet reaped
    return f"{socket.gethostname()}:{pid}:{fields[19]}"


def this_process_tags() -> dict[str, str]:
    return {PROCESS_TAG: process_identity(os.getpid()) or ""}


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every in-flight run of this host whose executing process is gone; their ids."""
    host = socket.gethostname()
    failed = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT)):
        run = record.dagster_run
        identity = run.tags.get(PROCESS_TAG, "")
        found_host, _, rest = identity.partition(":")
        if found_host != host or not rest:
            continue  # launched by the daemon (its run monitoring watches it), or another host's
        pid = int(rest.split(":", 1)[0])
        if process_identity(pid) == identity:
            continue
        instance.report_run_failed(
            run,
            message=f"its process (pid {pid} on {host}) died mid-run; marked failed by the next run here",
        )
        failed.append(run.run_id)
    return failed
