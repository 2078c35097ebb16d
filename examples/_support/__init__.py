"""What the two example shops have in common, kept in one place.

Each example keeps its own service code (what is spanned, what is dark) in its own
package; this package holds the rest:

``demo``
    the orchestration behind each ``demo.py``: upstream, shop under ``gapreport run``,
    load, SIGINT, clean-up;
``upstream``
    the JSON request handler and the ``main`` of each fake upstream service;
``loadgen``
    arguments, results and the summary line of each load driver;
``service``
    what each run script does around its server: arguments, stop signals, the span
    pipeline (``tracing``) and a scratch directory for the database;
``signals``
    SIGINT and SIGTERM stop every server the same way (KeyboardInterrupt);
``db``, ``seed``
    the SQLite connection per thread, the order lookup and the seeding helpers that both
    shops' schemas share.

The entry scripts put ``examples/`` on ``sys.path`` so that ``import _support`` works
whether they are run from the repository root or from their own directory. Modules used
inside a shop's process (``service``, ``signals``, ``tracing``, ``db``, ``seed``) are
application code as far as spangap is concerned: when they run for 10 ms or more outside
a span, they show up in the report under their own names (``_support.db:connection``, for
example). Nothing is imported here.
"""
