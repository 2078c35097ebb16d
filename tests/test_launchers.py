"""Real launchers, end to end, each running its examples/launchers/ directory as written
with prometheus-client's multiprocess mode: gunicorn with sync workers and --preload,
and gthread workers without it; uvicorn with two workers; Django under gunicorn; a
Celery prefork worker. The dark sites' counts of every worker add up in one /metrics;
the spanned ones never appear; a worker that exits keeps its counts."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import pytest

from conftest import FULL_RATE_ENV

pytest.importorskip("gunicorn", reason="gunicorn is installed with spangap[examples]")

LAUNCHERS = Path(__file__).resolve().parents[1] / "examples" / "launchers"
EXAMPLE = LAUNCHERS / "gunicorn"
DARK = 'site="wsgi:load_report"'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def counted(base: str, site: str) -> float:
    """The sum over workers and causes of uninstrumented_operations_total for ``site``
    (``site`` and any further label text, e.g. the cause, must all be in the labels)."""
    pattern = re.compile(r"^uninstrumented_operations_total\{([^}]*)\} (\S+)$", re.M)
    found = pattern.findall(get(base + "/metrics"))
    return sum(float(v) for labels, v in found if all(p in labels for p in site.split(",")))


def wait_for(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextmanager
def serving(
    cmd: list[str], cwd: Path, env: dict[str, str], ready: str, stop: int = signal.SIGTERM
) -> Iterator[tuple[str, int]]:
    """Start a server on a free port (``{port}`` in ``cmd`` or in ``env``'s values is
    filled in); ``ready`` is "PATH TEXT": wait until TEXT is in its answer to PATH; yield
    its base URL and pid; then stop it (``stop``, SIGTERM by default; SIGKILL after 20 s;
    ``stop=SIGKILL`` kills its whole process group at once)."""
    port = free_port()
    env = {name: value.replace("{port}", str(port)) for name, value in env.items()}
    server = subprocess.Popen(
        [c.format(port=port) for c in cmd], cwd=cwd, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        path, expected = ready.split(" ", 1)
        wait_for(lambda: expected in get(base + path), f"{cmd[2]} to serve")
        yield base, server.pid
    finally:
        if stop == signal.SIGKILL:  # the whole group: a pool's processes too
            os.killpg(server.pid, signal.SIGKILL)
        else:
            server.send_signal(stop)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def copied(example: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The example's files in a temporary directory, and an environment with the budget
    lifted and prometheus-client's multiprocess directory of its own."""
    app = tmp_path / "app"
    shutil.copytree(LAUNCHERS / example, app)
    (tmp_path / "prom").mkdir()
    return app, {**os.environ, **FULL_RATE_ENV, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}


GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "2"]
GUNICORN += ["--bind", "127.0.0.1:{port}", "--graceful-timeout", "5"]


@pytest.fixture(
    # Both worker classes and both --preload modes, in two runs (the suite's time).
    params=[("sync", True), ("gthread", False)],
    ids=["sync-preload", "gthread"],
)
def gunicorn(request, tmp_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    worker_class, preload = request.param
    app, env = copied("gunicorn", tmp_path)
    cmd = [*GUNICORN, "-k", worker_class, *(["--preload"] if preload else []), "wsgi:app"]
    with serving(cmd, app, env, "/ ok") as (base, pid):
        yield base, psutil.Process(pid)


def settled(base: str, site: str = DARK) -> float:
    """The dark site's count once it stops changing: workers write their counts to the
    shared files once a second."""
    last = counted(base, site)
    while True:
        time.sleep(1.2)
        now = counted(base, site)
        if now == last:
            return now
        last = now


def test_the_workers_counts_add_up_in_one_scrape_and_survive_a_worker_exit(gunicorn) -> None:
    """Exact at full rate but for a miss a busy machine may cause (as the ground-truth
    tests allow 1%): never more than the requests, never fewer than all but one."""
    base, master = gunicorn
    workers = master.children()
    assert len(workers) == 2
    for _ in range(20):
        get(base + "/")
    first = settled(base)
    assert 20 <= first <= 21  # the readiness request too
    assert counted(base, 'site="wsgi:render"') == 0  # spanned
    assert counted(base, 'site="wsgi:app"') == 0  # a span was made current in it

    gone = workers[0].pid
    assert f'pid="{gone}"' in get(base + "/metrics")  # each live worker's gauges
    workers[0].send_signal(signal.SIGTERM)  # a worker exits; gunicorn starts another
    wait_for(
        lambda: len(master.children()) == 2 and workers[0] not in master.children(),
        "a new worker",
    )
    assert counted(base, DARK) == first  # its counts stay
    assert f'pid="{gone}"' not in get(base + "/metrics")  # its gauges go (child_exit)
    for _ in range(10):
        get(base + "/")
    assert 9 <= settled(base) - first <= 10


@pytest.mark.parametrize(
    ("heading", "end", "files"),
    [
        ("## gunicorn", "## Celery", ["gunicorn/gunicorn.conf.py", "gunicorn/wsgi.py"]),
        ("### uvicorn with several workers", "## Django", ["uvicorn/app.py"]),
        ("## Celery", "## Anything else", ["celery/tasks.py"]),
        (
            "### Django under gunicorn",
            "## gunicorn",
            ["django/shop/views.py", "django/mysite/wsgi.py"],
        ),
    ],
)
def test_the_recipes_in_the_docs_are_the_tested_files(heading, end, files) -> None:
    docs = (LAUNCHERS.parents[1] / "docs" / "services.md").read_text()
    section = docs[docs.index(heading) : docs.index(end)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks == [(LAUNCHERS / name).read_text() for name in files]


@pytest.fixture
def uvicorn(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("uvicorn", reason="uvicorn is installed with spangap[examples]")
    app, env = copied("uvicorn", tmp_path)
    cmd = [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2", "--port", "{port}"]
    with serving(cmd, app, env, "/ ok") as (base, _):
        yield base


def test_uvicorn_workers_count_the_jobs_their_requests_lost_the_span_of(uvicorn) -> None:
    base = uvicorn
    for _ in range(20):
        get(base + "/")
    lost = 'site="app:load_report",cause="context_lost"'
    assert 20 <= settled(base, lost) <= 21  # the readiness request too
    assert counted(base, 'site="app:load_report",cause="no_span"') == 0
    assert counted(base, 'site="app:render"') == 0  # inside the endpoint's span


@pytest.fixture
def django_under_gunicorn(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("django", reason="django is installed with spangap[examples]")
    app, env = copied("django", tmp_path)
    env |= {"DJANGO_SETTINGS_MODULE": "mysite.settings", "SHOP_DB": str(tmp_path / "shop.db")}
    setup = "import django; django.setup(); from django.core.management import call_command; "
    setup += "call_command('migrate', run_syncdb=True, verbosity=0); from shop.models import "
    setup += "Item; Item.objects.bulk_create([Item(name=f'i{n}') for n in range(20)])"
    subprocess.run([sys.executable, "-c", setup], cwd=app, env=env, check=True, timeout=60)
    with serving([*GUNICORN, "mysite.wsgi"], app, env, "/invoice/ stock") as (base, _):
        yield base


def test_django_views_are_covered_and_their_orm_work_in_a_thread_is_context_lost(
    django_under_gunicorn,
) -> None:
    base = django_under_gunicorn
    for _ in range(10):
        get(base + "/invoice/")
    lost = 'site="shop.views:refresh_stock",cause="context_lost"'
    assert 10 <= settled(base, lost) <= 11  # the readiness request too
    assert counted(base, 'site="shop.views:invoice"') == 0  # the instrumentation's span


CELERY = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool", "prefork"]
# Each pool process exits after 4 tasks (Celery ends it with os._exit), so most counts
# come from processes that are gone by the time of the scrape.
CELERY += ["--concurrency", "2", "--max-tasks-per-child", "4", "--loglevel", "warning"]
CELERY_READY = "/metrics spangap_sampler_rate_hertz{pid="  # a pool process's detector


@pytest.fixture
def celery_worker(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a worker (``trace_tasks``: with Celery's instrumentation); yield a function
    that sends N tasks (``traced``: from a producer with a span and the instrumentation)
    and returns the base URL of the worker's /metrics."""
    pytest.importorskip("celery", reason="celery is installed with spangap[examples]")
    app, env = copied("celery", tmp_path)
    (tmp_path / "broker").mkdir()
    env |= {"BROKER_DIR": str(tmp_path / "broker"), "METRICS_PORT": "{port}"}
    with ExitStack() as stack:
        started: list[str] = []

        def send(n: int, *, traced: bool, trace_tasks: bool = False) -> str:
            if not started:
                worker_env = env | {"TRACE_TASKS": "1" if trace_tasks else "0"}
                # Killed with its pool once the counts are read: even a cold shutdown of a
                # Celery worker takes seconds, and the suite has no use for them.
                worker = serving(CELERY, app, worker_env, CELERY_READY, signal.SIGKILL)
                base, _ = stack.enter_context(worker)
                started.append(base)
            producer = [sys.executable, "producer.py", str(n), *(["--traced"] if traced else [])]
            subprocess.run(producer, cwd=app, env=env, check=True, timeout=60)
            return started[0]

        yield send


def test_celery_task_bodies_are_dark_and_the_cause_says_if_the_producer_had_a_span(
    celery_worker,
) -> None:
    celery_worker(10, traced=False)
    base = celery_worker(10, traced=True)
    task = 'site="tasks:load_report"'
    wait_for(lambda: counted(base, task) >= 19, "the tasks to run", timeout=60)
    assert 9 <= settled(base, task + ',cause="no_span"') <= 10
    assert 9 <= counted(base, task + ',cause="context_lost"') <= 10


def test_celery_task_bodies_are_covered_with_the_instrumentation(celery_worker) -> None:
    base = celery_worker(10, traced=True, trace_tasks=True)
    spanned = re.compile(r"^span_coverage_spanned_seconds_total (\S+)$", re.M)
    # 10 task bodies of 30 ms each under the instrumentation's span: 0.3 s
    wait_for(lambda: float(spanned.findall(get(base + "/metrics"))[0]) >= 0.25, "spans")
    settled(base, 'site="tasks:load_report"')
    assert counted(base, 'site="tasks:load_report"') == 0
