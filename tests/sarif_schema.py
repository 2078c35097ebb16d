"""The OASIS SARIF 2.1.0 JSON schema, for validating the audit's SARIF output.

It ships in the npm package @microsoft/jest-sarif; ``npm pack`` fetches that from the
npm registry into a cache directory once (.ci/run installs npm). ``SARIF_SCHEMA`` may
name a copy of the schema instead."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

PACKAGE = "@microsoft/jest-sarif@1.0.0-beta.0"
MEMBER = "package/lib/schemas/sarif-2.1.0-rtm.5.json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spangap-tests"


def sarif_schema() -> dict[str, Any]:
    named = os.environ.get("SARIF_SCHEMA")
    path = Path(named) if named else CACHE / "sarif-2.1.0.json"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(
            ["npm", "pack", "--silent", PACKAGE], cwd=CACHE, capture_output=True, text=True,
            check=True, timeout=120,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        with tarfile.open(CACHE / packed) as archive:
            member = archive.extractfile(MEMBER)
            assert member is not None, f"{PACKAGE} has no {MEMBER}"
            path.write_bytes(member.read())
    return dict(json.loads(path.read_text()))
