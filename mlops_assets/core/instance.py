"""The local Dagster instance under MLOPS_HOME/dagster: no telemetry, queued runs with stage limits."""

from __future__ import annotations

from pathlib import Path

import yaml

# Run-level limits (pools only limit single steps): one training and one release at a time.
# The queue applies them to the runs it launches; core/stage_lock.py to every run.
STAGE_TAG = "mlops/stage"
SERIAL_STAGES = ("training", "release")
INSTANCE_CONFIG = {
    "telemetry": {"enabled": False},
    "nux": {"enabled": False},
    "run_coordinator": {
        # The queue, tagging runs launched from the UI's asset graph with their assets' stage.
        "module": "mlops_assets.core.run_coordinator",
        "class": "StageTaggingRunCoordinator",
        "config": {
            "max_concurrent_runs": 4,
            "tag_concurrency_limits": [{"key": STAGE_TAG, "value": s, "limit": 1} for s in SERIAL_STAGES],
        },
    },
}


def write_instance_config(dagster_home: Path) -> Path:
    """Create (or bring up to date) ``dagster.yaml``; returns its path."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    text = "# Written by mlops-assets; changes are overwritten.\n" + yaml.safe_dump(
        INSTANCE_CONFIG, sort_keys=False
    )
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
