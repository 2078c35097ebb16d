"""Calls from request handlers and their jobs to the upstream payment / notification service.

These go through ``requests``, which RequestsInstrumentor instruments: each call gets a
client span, a child of whatever span is current on the calling thread.
"""

from __future__ import annotations

from typing import Any

import requests

TIMEOUT_S = 2.0


def authorize_payment(
    upstream: str, customer_id: int, amount_cents: int, currency: str
) -> dict[str, Any]:
    """Ask the payment service to authorize a charge; raises on refusal or failure."""
    response = requests.post(
        f"{upstream}/pay",
        json={"customer_id": customer_id, "amount_cents": amount_cents, "currency": currency},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    if not body.get("approved"):
        raise PaymentDeclined(body.get("reason", "declined"))
    return body


def notify_customer(upstream: str, customer_id: int, subject: str, text: str) -> None:
    """Hand a message to the notification service for delivery."""
    response = requests.post(
        f"{upstream}/notify",
        json={"customer_id": customer_id, "subject": subject, "text": text},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()


class PaymentDeclined(Exception):
    pass
