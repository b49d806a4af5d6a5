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


def trust_line(trusted: Iterable[str], more: Iterable[str]) -> str:
    """The ``[artifact]`` line of project.toml that trusts ``more`` besides what it trusts already."""
    import json

    return f"trusted_types = {json.dumps(sorted(set(trusted) | set(more)))}"


def load_verified_model(
    data: bytes,
    expected_sha256: str,
    source: str = "model artifact",
    trusted: Iterable[str] = (),
    spec_file: str = "the model project's project.toml",
) -> Any:
    """The artifact, if its sha256 matches and it holds only types skops trusts by default (numpy,
    scikit-learn's estimators) or that ``trusted`` lists (the model project's spec). A refusal
    says the line of ``spec_file`` that would trust the rest, for its author to judge."""
    verify_sha256(data, expected_sha256, source)
    import skops.io as sio

    trusted = tuple(trusted)
    untrusted = set(sio.get_untrusted_types(data=data))
    unknown = untrusted - set(trusted)
    if unknown:
        raise ArtifactError(
            f"{source}: refusing to load untrusted types {sorted(unknown)}; if the project's code or "
            f"scikit-learn made them, trust them under [artifact] in {spec_file}: "
            f"{trust_line(trusted, unknown)}"
        )
    return sio.loads(data, trusted=sorted(untrusted))


def saved_and_loaded(model: Any, trusted: Iterable[str], spec_file: str) -> Any:
    """``model`` after the round trip every stage makes (skops out, verified, skops in): a type
    the spec does not trust fails here, on the author's machine, naming the line to add."""
    import skops.io as sio

    data = sio.dumps(model)
    return load_verified_model(data, sha256_hex(data), "the fitted model", trusted, spec_file)
