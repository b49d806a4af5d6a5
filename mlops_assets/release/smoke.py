"""The smoke test a deployment must pass: the release manifest's sample, checked against the model's
own predictions for it, the version header, and a refusal without a key."""

from dataclasses import dataclass, field

import httpx
import numpy as np

from mlops_assets.serving.app import SYNTHETIC_HEADER

SMOKE_TRACEPARENT = "00-5a0c2e7f4b1d4c3a9e8f7a6b5c4d3e2f-1a2b3c4d5e6f7a8b-01"


@dataclass(frozen=True)
class SmokeSample:
    """Rows to send and the registered artifact's own predictions for them (known before a deploy)."""

    rows: list[list[float]]
    predictions: list[float]
    source: str  # where the sample came from, shown in the UI ("manifest")


@dataclass
class SmokeResult:
    url: str
    failures: list[str] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    latency_ms: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures


def _same_predictions(served: list, expected: list) -> bool:
    """Numbers (and a classifier's true/false against the 1.0/0.0 it was trained on) within
    rounding; text labels exactly."""
    if len(served) != len(expected):
        return False
    if all(isinstance(v, int | float) for v in [*served, *expected]):
        return bool(np.allclose(served, expected, rtol=1e-9, atol=1e-9))
    return [str(v) for v in served] == [str(v) for v in expected]


def smoke_test(url: str, key: str, sample: SmokeSample, version: str, timeout: float = 10.0) -> SmokeResult:
    """POST the sample with the key: the same numbers as the model, the right version header, and
    401 without a key. Never raises: whatever goes wrong is a failure in the result."""
    result = SmokeResult(url)
    headers = {"Authorization": f"Bearer {key}", "traceparent": SMOKE_TRACEPARENT, SYNTHETIC_HEADER: "true"}
    try:
        with httpx.Client(timeout=timeout) as client:
            response = client.post(f"{url}/score", json={"data": sample.rows}, headers=headers)
            result.latency_ms = response.elapsed.total_seconds() * 1000
            if response.status_code != 200:
                result.failures.append(
                    f"POST /score with the key: HTTP {response.status_code} {response.text[:200]}"
                )
            else:
                result.predictions = response.json().get("result", [])
                if not _same_predictions(result.predictions, sample.predictions):
                    result.failures.append(
                        f"predictions {result.predictions} differ from the model's {sample.predictions}"
                    )
                served = response.headers.get("x-model-version")
                if served != version:
                    result.failures.append(f"x-model-version is {served!r}, expected {version!r}")
            anonymous = client.post(
                f"{url}/score", json={"data": sample.rows}, headers={SYNTHETIC_HEADER: "true"}
            )
            if anonymous.status_code != 401:
                result.failures.append(
                    f"POST /score without a key: HTTP {anonymous.status_code}, expected 401"
                )
    except httpx.HTTPError as exc:
        result.failures.append(f"{url} did not answer: {exc}")
    except (ValueError, TypeError, AttributeError) as exc:  # a 200 whose body is not the contract
        result.failures.append(f"{url} answered something other than {{'result': [...]}}: {exc}")
    return result
