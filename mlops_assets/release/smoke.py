"""The smoke test a deployment must pass: the release manifest's sample, checked against the model's
own predictions for it, the version header, and a refusal without a key."""

from dataclasses import dataclass, field

import httpx

from mlops_assets.model.smoke import SmokeSample, same_predictions
from mlops_assets.serving.handler import SYNTHETIC_HEADER

SMOKE_TRACEPARENT = "00-5a0c2e7f4b1d4c3a9e8f7a6b5c4d3e2f-1a2b3c4d5e6f7a8b-01"


@dataclass
class SmokeResult:
    url: str
    failures: list[str] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    latency_ms: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures


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
                if not same_predictions(result.predictions, sample.predictions, sample.rtol):
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
