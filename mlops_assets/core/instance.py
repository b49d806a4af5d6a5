"""The local Dagster instance under MLOPS_HOME/dagster: no telemetry, queued runs with stage limits."""

from __future__ import annotations

from pathlib import Path

import yaml

# Run-level limits (pools only limit single steps): one training and one release at a time.
STAGE_TAG = "mlops/stage"
INSTANCE_CONFIG = {
    "telemetry": {"enabled": False},
    "nux": {"enabled": False},
    "run_coordinator": {
        "module": "dagster._core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {
            "max_concurrent_runs": 4,
            "tag_concurrency_limits": [
                {"key": STAGE_TAG, "value": "training", "limit": 1},
                {"key": STAGE_TAG, "value": "release", "limit": 1},
            ],
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
