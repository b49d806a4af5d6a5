"""Model artifacts: sha256 verification and a skops load that cannot run arbitrary code.

Standard library and skops only: the scoring service and score.py use it too.
"""

from __future__ import annotations

import hashlib
from typing import Any

# Exactly the types train.py's StandardScaler+Ridge pipeline is made of; anything else is refused.
TRUSTED_TYPES = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.linear_model._ridge.Ridge",
    }
)


class ArtifactError(ValueError):
    """The artifact is not the one the manifest names, or holds types we do not trust."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_verified_model(data: bytes, expected_sha256: str, source: str = "model artifact") -> Any:
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise ArtifactError(f"{source}: sha256 {actual} does not match the expected {expected_sha256}")
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(data=data))
    unknown = untrusted - TRUSTED_TYPES
    if unknown:
        raise ArtifactError(f"{source}: refusing to load untrusted types {sorted(unknown)}")
    return sio.loads(data, trusted=sorted(untrusted))
