"""A model artifact verified before it is loaded: its sha256 against the manifest's, and only the
types skops trusts by default or the model project's spec lists (never bare pickle)."""

import hashlib
from collections.abc import Iterable
from typing import Any


class ArtifactError(ValueError):
    """The artifact is not the one the manifest names, or holds types we do not trust."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_sha256(data: bytes, expected_sha256: str, source: str = "model artifact") -> None:
    """An ArtifactError naming ``source`` unless ``data`` is the artifact ``expected_sha256`` names."""
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise ArtifactError(f"{source}: sha256 {actual} does not match the expected {expected_sha256}")


def load_verified_model(
    data: bytes, expected_sha256: str, source: str = "model artifact", trusted: Iterable[str] = ()
) -> Any:
    """The artifact, if its sha256 matches and it holds only types skops trusts by default (numpy,
    scikit-learn's estimators) or that ``trusted`` lists (the model project's spec)."""
    verify_sha256(data, expected_sha256, source)
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(data=data))
    unknown = untrusted - set(trusted)
    if unknown:
        raise ArtifactError(f"{source}: refusing to load untrusted types {sorted(unknown)}")
    return sio.loads(data, trusted=sorted(untrusted))
