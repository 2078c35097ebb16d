"""A stand-in for the shop's upstream services: exchange rates, payments, notifications.

    python upstream.py [--port 0]

The routes are below; serving them (on 127.0.0.1, every reply 20-40 ms late, as calls
across a data centre are) is ``_support.upstream``'s job.

    GET  /rates   -> {"base": "EUR", "rates": {"USD": 1.08, ...}}
    POST /pay     -> {"approved": true, "payment_id": "..."}
    POST /notify  -> {"delivered": true}
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for _support

from _support.upstream import JSONHandler, main

BASE_RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85, "CHF": 0.95, "SEK": 11.3, "JPY": 161.0}


class Handler(JSONHandler):
    def do_GET(self) -> None:
        if self.path == "/rates":
            rates = {
                currency: rate if currency == "EUR" else round(rate * random.uniform(0.99, 1.01), 5)
                for currency, rate in BASE_RATES.items()
            }
            self.reply(200, {"base": "EUR", "rates": rates})
        elif self.path == "/healthz":
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        try:
            body = json.loads(self.read_body() or b"{}")
        except ValueError:
            self.reply(400, {"error": "invalid JSON"})
            return
        if self.path == "/pay":
            if int(body.get("amount_cents", 0)) <= 0:
                self.reply(200, {"approved": False, "reason": "nothing to charge"})
            else:
                self.reply(200, {"approved": True, "payment_id": uuid.uuid4().hex})
        elif self.path == "/notify":
            self.reply(200, {"delivered": True})
        else:
            self.reply(404, {"error": "not found"})


if __name__ == "__main__":
    sys.exit(main(Handler, __doc__.splitlines()[0]))
