"""Scoring keys in a 0600 file under MLOPS_HOME (the local profile's secret store)."""

import secrets
from pathlib import Path

from mlops_assets.settings import make_secret_file


def read_keys(path: Path) -> tuple[str, ...]:
    """One key a line; blank lines and ``#`` comments are skipped."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def ensure_key_file(path: Path) -> bool:
    """Create ``path`` with one random key, readable by the owner only; False if it existed."""
    header = "# scoring keys, one a line; add a new key, deploy it to clients, then remove the old\n"
    return make_secret_file(path, header + secrets.token_urlsafe(32) + "\n")


def add_key(path: Path) -> str:
    """Append a new random key (rotation: both old and new are valid until the old is removed)."""
    ensure_key_file(path)
    key = secrets.token_urlsafe(32)
    with open(path, "a") as handle:
        handle.write(key + "\n")
    return key
