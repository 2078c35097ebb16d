"""A small threaded web shop: the application that spangap looks at in this example.

The package is deliberately ordinary. Flask handlers run under the request span that
FlaskInstrumentor opens, while a background price refresher, an audit writer thread and
report jobs handed to a thread pool run outside any span, as they do in many services.

Nothing is imported here so that light processes (the load driver) can read
``shop.seed`` without importing Flask.
"""
