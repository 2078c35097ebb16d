"""JSON schemas of file formats spangap writes, for validating its output in tests:
OASIS SARIF 2.1.0 (shipped in the npm package @microsoft/jest-sarif) and speedscope's
file format (in the npm package speedscope). ``npm pack`` fetches each package from the
npm registry into a cache directory once (.ci/run installs npm)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spangap-tests"


def _schema(package: str, member: str, name: str) -> dict[str, Any]:
    path = CACHE / name
    if not path.exists():  # two test processes may both get here: each in a directory
        CACHE.mkdir(parents=True, exist_ok=True)  # of its own, the file replaced whole
        with tempfile.TemporaryDirectory(dir=CACHE) as work:
            packed = subprocess.run(
                ["npm", "pack", "--silent", package], cwd=work, capture_output=True, text=True,
                check=True, timeout=120,
            ).stdout.strip().splitlines()[-1]  # fmt: skip
            with tarfile.open(Path(work) / packed) as archive:
                found = archive.extractfile(member)
                assert found is not None, f"{package} has no {member}"
                (Path(work) / name).write_bytes(found.read())
            os.replace(Path(work) / name, path)
    return dict(json.loads(path.read_text()))


def sarif_schema() -> dict[str, Any]:
    return _schema(
        "@microsoft/jest-sarif@1.0.0-beta.0",
        "package/lib/schemas/sarif-2.1.0-rtm.5.json",
        "sarif-2.1.0.json",
    )


def speedscope_schema() -> dict[str, Any]:
    return _schema(
        "speedscope@1.25.0", "package/dist/release/file-format-schema.json", "speedscope.json"
    )
