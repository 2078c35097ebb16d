"""FastAPI-shaped handlers, an async generator, and hand-offs to threads."""

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, FastAPI
from opentelemetry import trace

import spangap

tracer = trace.get_tracer(__name__)
app = FastAPI()
router = APIRouter()
executor = ThreadPoolExecutor()


@router.get("/items")
async def items():  # expect: missing-span
    return await asyncio.sleep(0)


@app.get("/report")
@spangap.traced
async def report():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, build)  # expect: span-not-propagated
    return {}


async def stream_rows(rows):  # expect: missing-span
    for row in rows:
        yield row


async def stream_spanned(rows):
    async with tracer.start_as_current_span("stream"):
        for row in rows:
            yield row


def build():
    with tracer.start_as_current_span("build"):
        executor.submit(contextvars.copy_context().run, compress)
        executor.submit(compress)  # expect: span-not-propagated


def compress():  # spangap: no-span pure CPU, microseconds
    return 0
