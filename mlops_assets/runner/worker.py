"""The project runner's process: ``python -m mlops_assets.runner.worker``, started by ``client.py``.

One JSON request per line in, one JSON answer per line out, on the descriptors it was started
with; the project's own prints and reads get stderr and nothing, so they can never corrupt the
conversation. An error is answered with its kind and message (naming the file and the rule, as
every error here does) and the traceback goes to stderr, the step's log: the process stays up for
the next request.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from pathlib import Path

SCRATCH_PREFIX = "mlops-runner-"  # the client's scratch folders: the worker's working directory


def _conversation() -> tuple:
    """The requests' and answers' streams, moved off fds 0 and 1 (then /dev/null and stderr)."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - for the process's lifetime
    sys.stdout = sys.stderr
    return requests, answers


def main(argv: list[str]) -> int:
    """``argv``: the project package to mount (the project's folder, or the copy a version carries)."""
    requests, answers = _conversation()
    from mlops_assets.project.package import mount
    from mlops_assets.runner.tasks import EXPLAINED, TASKS  # numpy, pandas, scikit-learn: after the fds move

    mount(Path(argv[0]))  # before any artifact loads: its classes may be the project's

    try:
        answers.write(json.dumps({"ready": os.getpid()}) + "\n")
        for line in requests:
            request = json.loads(line)
            try:
                answer = {"result": TASKS[request["task"]](**request.get("args", {}))}
            except Exception as exc:  # every failure is an answer; the next request still runs
                if not isinstance(exc, EXPLAINED):  # those name the file and the rule: no traceback
                    traceback.print_exc(file=sys.stderr)
                answer = {"error": str(exc) or repr(exc), "kind": type(exc).__name__}
            answers.write(json.dumps(answer, default=_plain) + "\n")
    except BrokenPipeError:
        pass  # the orchestrator is gone mid-answer: nobody to tell
    # The orchestrator let go (closed, or died without closing): the scratch folder it made for
    # this process goes with it, whoever gets here first.
    scratch = Path.cwd()
    if scratch.name.startswith(SCRATCH_PREFIX):
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _plain(value: object) -> object:
    """numpy's numbers as Python's."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
