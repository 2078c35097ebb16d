"""Code locations only: a secret planted in arguments, locals, the environment, a
request body and a thread's context never reaches any output of spangap."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import FULL_RATE_ENV

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"

PROGRAM = """
    import contextvars, http.server, os, sys, threading, time, urllib.request
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    import spangap

    trace.set_tracer_provider(TracerProvider())
    SECRET = os.environ["PLANTED_SECRET"]
    request_secret = contextvars.ContextVar("request_secret")

    def charge_card(card_token):  # the secret as an argument, and in a local below
        receipt = "receipt-for-" + card_token
        request_secret.set(card_token)
        time.sleep(0.03)
        return len(receipt)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            charge_card(body)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/pay"
    for _ in range(8):
        urllib.request.urlopen(urllib.request.Request(url, data=SECRET.encode())).read()
    time.sleep(1.5)  # the sampler passes completed calls on about once a second
    detector = spangap.enable_gap_detector()  # the running one
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{detector.metrics_port}/metrics")
    with open(sys.argv[1], "wb") as out:
        out.write(metrics.read())
    server.shutdown()
"""


def test_a_planted_secret_is_in_no_metric_snapshot_report_or_log(tmp_path: Path) -> None:
    program = tmp_path / "payments.py"
    program.write_text(textwrap.dedent(PROGRAM))
    snapshot, metrics = tmp_path / "snap.json", tmp_path / "metrics.txt"
    env = {**os.environ, **FULL_RATE_ENV, "PLANTED_SECRET": SECRET}
    run = subprocess.run(
        [sys.executable, "-m", "spangap.cli", "run", "--snapshot", str(snapshot),
         "--metrics-port", "0", "--format", "json", str(program), str(metrics)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    show = subprocess.run(
        [sys.executable, "-m", "spangap.cli", "show", str(snapshot), "--format", "markdown"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    outputs = {
        "run stdout": run.stdout,
        "run stderr (report and logs)": run.stderr,
        "snapshot": snapshot.read_text(),
        "metrics": metrics.read_text(),
        "show": show.stdout + show.stderr,
    }
    # the outputs are about the planted call: the secret had every chance to leak
    assert ':charge_card"' in outputs["snapshot"]
    assert ':charge_card"}' in outputs["metrics"]
    leaked = [name for name, text in outputs.items() if SECRET in text or SECRET[8:] in text]
    assert leaked == []
