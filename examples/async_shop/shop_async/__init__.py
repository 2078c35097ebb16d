"""A small async web shop: the application that spangap looks at in this example.

FastAPI on uvicorn, with OpenTelemetry's ASGI instrumentation opening a server span for
every request. Handlers that await, that are plain ``def`` functions run on Starlette's
thread pool, or that use ``asyncio.to_thread`` all run under that span. An executor job
submitted with ``loop.run_in_executor``, a fire-and-forget ``threading.Thread`` and a
background task started at boot do not.

Nothing is imported here so that light processes (the load driver) can read
``shop_async.seed`` without importing FastAPI.
"""
