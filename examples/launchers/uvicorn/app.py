"""A FastAPI app for `uvicorn --workers N`: the detector starts in each worker's
lifespan; per request, a helper handed to an executor without its span (context_lost)
and one inside the endpoint's span; /metrics adds up every worker's counters
(prometheus-client multiprocess mode: PROMETHEUS_MULTIPROC_DIR set for the server)."""

import asyncio
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest, multiprocess

import spangap

trace.set_tracer_provider(TracerProvider())


@asynccontextmanager
async def lifespan(app: FastAPI):
    spangap.enable_gap_detector()  # options from SPANGAP_* as well
    yield


app = FastAPI(lifespan=lifespan)


def load_report() -> None:
    time.sleep(0.03)  # in an executor thread, without the request's span: counted


def render() -> None:
    time.sleep(0.03)  # inside the endpoint's span: never counted


@app.get("/")
async def index() -> dict[str, str]:
    await asyncio.get_running_loop().run_in_executor(None, load_report)
    render()
    return {"status": "ok"}


@app.get("/metrics")
def metrics() -> Response:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type="text/plain")
