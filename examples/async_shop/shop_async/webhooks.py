"""Outgoing webhooks: tell the merchant's fulfilment system that an order is to be shipped.

``POST /orders/{id}/ship`` starts :func:`send_webhook` on a new ``threading.Thread`` and
answers at once, fire and forget. A new thread starts with an empty context, so the
request's span does not come along: the signing and the 20-40 ms HTTP call run with no
span (spangap's ``cause="context_lost"``), and the trace of the request ends before the
webhook is even sent.

The call uses urllib, in a plain thread, as such helpers often do; nothing in this process
instruments urllib.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.request
from typing import Any

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0
SIGNING_KEY = b"example-shared-secret"  # a demo value; a real one comes from configuration


def send_webhook(upstream: str, event: dict[str, Any]) -> None:
    """Sign ``event`` and POST it to the upstream's webhook receiver; log failures."""
    body = json.dumps({**event, "sent_at": time.time()}, sort_keys=True).encode()
    signature = hmac.new(SIGNING_KEY, body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{upstream}/webhook",
        data=body,
        headers={"Content-Type": "application/json", "X-Signature": f"sha256={signature}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            response.read()
    except OSError as exc:
        log.warning("webhook %s for order %s failed: %s", event["type"], event["order_id"], exc)
