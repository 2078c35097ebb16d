"""The options and metrics reference, generated from the code so that it cannot drift.

``python -m spangap.reference`` rewrites docs/reference.md and the options table in the
README (between its ``options`` markers); the tests fail when either is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from .metrics import MetricSet, metric_set
from .options import OPTION_DOCS, OPTION_NAMES, UNDOCUMENTED

START, END = "<!-- options:start -->", "<!-- options:end -->"


def options_table() -> str:
    """The options, in the order of the README's table."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    rows += [
        f"| `{name}` | {default} | {meaning} |" for name, (default, meaning) in OPTION_DOCS.items()
    ]
    return "\n".join(rows) + "\n"


def metrics_table() -> str:
    """Every metric spangap exports: name as scraped, type, labels, help."""
    registry = CollectorRegistry()
    metrics: MetricSet = metric_set(registry, "")
    labels = {
        metric._name: ", ".join(f"`{label}`" for label in metric._labelnames)
        for metric in vars(metrics).values()
        if hasattr(metric, "_labelnames")
    }
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for family in registry.collect():
        shown = family.name + ("_total" if family.type == "counter" else "")
        rows.append(
            f"| `{shown}` | {family.type} | {labels.get(family.name, '') or '—'} "
            f"| {family.documentation} |"
        )
    return "\n".join(rows) + "\n"


def reference_page() -> str:
    return (
        "# Options and metrics reference\n\n"
        "Generated from the code by `python -m spangap.reference`.\n\n"
        "## Options\n\n"
        "Every option but `registry` can also be set by an environment variable "
        "`SPANGAP_<OPTION>` (upper case; lists comma-separated); keyword arguments, and "
        "`gapreport run`'s flags, win over it. A bad value raises `spangap.OptionError` "
        "naming the option.\n\n" + options_table() + "\n## Metrics\n\n" + metrics_table()
    )


def with_options_table(readme: str) -> str:
    """``readme`` with the table between its markers replaced by the current one."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{options_table()}{END}{tail}"


def undocumented_options() -> set[str]:
    """Options that neither have documentation nor are meant to be hidden."""
    return set(OPTION_NAMES) - set(OPTION_DOCS) - UNDOCUMENTED


def main(root: Path) -> int:
    (root / "docs" / "reference.md").write_text(reference_page())
    readme = root / "README.md"
    readme.write_text(with_options_table(readme.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path.cwd()))
