"""``gapreport audit``: find the public functions that open no span, without running them.

The audit reads source files with :mod:`ast` and never imports them, so it is safe on any
code base and fast enough for a pre-commit hook. Its pieces, one job each:

- :mod:`.config` reads ``[tool.spangap.audit]`` and decides which files are in scope;
- :mod:`.scan` finds the functions, whether each has a span, and the findings;
- :mod:`.baseline` tells new findings from the known ones, so a gate can ratchet;
- :mod:`.output` renders the result as table, JSON, markdown, SARIF or GitHub annotations;
- :mod:`.command` wires them into the command line.
"""
