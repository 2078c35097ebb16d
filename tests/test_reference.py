"""The options and metrics reference is generated from the code, and kept current."""

from __future__ import annotations

from pathlib import Path

from spangap import reference

ROOT = Path(__file__).resolve().parent.parent


def test_every_option_is_documented_or_meant_to_be_hidden() -> None:
    assert reference.undocumented_options() == set()


def test_docs_reference_is_current() -> None:
    """Fails when an option or a metric changed without `python -m spangap.reference`."""
    assert (ROOT / "docs" / "reference.md").read_text() == reference.reference_page()


def test_readme_options_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert reference.with_options_table(readme) == readme
    assert "`native`" in readme and "`context_reader`" not in readme
