"""gunicorn settings: spangap in every worker, one /metrics for all of them."""

import os
import tempfile

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="prom-"))


def post_fork(server, worker):
    import spangap

    spangap.enable_gap_detector()  # options from SPANGAP_* as well


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
