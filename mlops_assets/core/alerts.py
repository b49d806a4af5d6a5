"""Short alerts to a webhook (Slack/Teams-style ``{"text": ...}``); nothing is sent when no URL is set."""

import logging

import dagster as dg
import httpx
from pydantic import Field

from mlops_assets.storage.redaction import redact_sas

log = logging.getLogger("mlops_assets.alerts")


class AlertWebhook(dg.ConfigurableResource):
    url: str | None = Field(
        default=None, description="Webhook URL (MLOPS_ALERT_WEBHOOK_URL); unset: no alerts."
    )
    timeout_seconds: float = 5.0

    def send(self, text: str, **fields: str) -> bool:
        """Post one alert; a webhook that fails is logged, never raised (an alert must not fail a run)."""
        if not self.url:
            return False
        text = redact_sas(text)  # a last guard: an error quoting a SAS link must not be posted on
        fields = {name: redact_sas(value) for name, value in fields.items()}
        try:
            response = httpx.post(self.url, json={"text": text, **fields}, timeout=self.timeout_seconds)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("alert webhook failed (%s): %s", type(exc).__name__, text)
            return False
        return True
