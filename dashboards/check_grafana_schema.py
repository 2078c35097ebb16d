"""Type-check dashboards/spangap.json against the dashboard types Grafana publishes.

    python3 dashboards/check_grafana_schema.py [DASHBOARD.json]

Grafana generates the TypeScript types of its dashboard JSON model from the schema it
validates dashboards with, and publishes them as the npm package ``@grafana/schema``,
one version per Grafana release. This installs the releases below and TypeScript into a
temporary directory (npm), and checks that the dashboard, written as an object literal,
``satisfies Dashboard``: every field known, every type right, nothing missing. TypeScript
enums are rewritten as unions of their values first, because a JSON string can never be
an enum member. Needs node and npm; exits non-zero when a release rejects the file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: One release of each Grafana major version from 10 on (the last patch of each seen).
GRAFANA_RELEASES = ("10.4.19", "11.6.16", "12.4.11", "13.2.3")
TYPESCRIPT = "5.9.3"
DEFAULT_DASHBOARD = Path(__file__).resolve().parent / "spangap.json"

_ENUM = re.compile(r"export (?:declare )?enum (\w+) \{([^}]*)\}")
_MEMBER = re.compile(r"(\w+)\s*=\s*('[^']*'|\"[^\"]*\"|-?\d+)")


def enums_as_unions(types: str) -> str:
    members: dict[str, str] = {}

    def union(found: re.Match[str]) -> str:
        name, body = found.group(1), found.group(2)
        pairs = _MEMBER.findall(body)
        members.update({f"{name}.{key}": value for key, value in pairs})
        return f"export type {name} = {' | '.join(value for _, value in pairs)};"

    types = _ENUM.sub(union, types)
    for reference, value in members.items():
        types = re.sub(rf"\b{re.escape(reference)}\b", value, types)
    return types


def dashboard_types(package: Path) -> Path:
    """Where a release keeps the ``Dashboard`` type (the file moved in Grafana 12)."""
    for pattern in (
        "dist/types/raw/dashboard/x/types.gen.d.ts",
        "dist/**/dashboard_types.gen.d.ts",
    ):
        found = sorted(package.glob(pattern))
        if found:
            return found[0]
    raise SystemExit(f"no dashboard types in {package}")


def main(argv: list[str]) -> int:
    dashboard = Path(argv[0]) if argv else DEFAULT_DASHBOARD
    document = json.loads(dashboard.read_text(encoding="utf-8"))
    if shutil.which("npm") is None:
        print("npm is needed (apt-get install npm)", file=sys.stderr)
        return 2
    failed = 0
    with tempfile.TemporaryDirectory(prefix="grafana-schema-") as tmp:
        work = Path(tmp)
        aliases = {f"schema-{v}": f"npm:@grafana/schema@{v}" for v in GRAFANA_RELEASES}
        manifest = {"private": True, "dependencies": {"typescript": TYPESCRIPT, **aliases}}
        (work / "package.json").write_text(json.dumps(manifest))
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=work, check=True
        )
        tsc = work / "node_modules" / ".bin" / "tsc"
        for release in GRAFANA_RELEASES:
            check = work / release
            check.mkdir()
            types = dashboard_types(work / "node_modules" / f"schema-{release}")
            (check / "types.d.ts").write_text(enums_as_unions(types.read_text()))
            literal = json.dumps(document, indent=2)
            (check / "check.ts").write_text(
                'import type { Dashboard } from "./types";\n'
                f"export const dashboard = ({literal}) satisfies Dashboard;\n"
            )
            result = subprocess.run(
                [str(tsc), "--noEmit", "--strict", "--target", "es2022", str(check / "check.ts")],
                capture_output=True,
                text=True,
            )
            status = "ok" if result.returncode == 0 else "REJECTED"
            print(f"@grafana/schema {release} (Grafana {release}): {status}")
            if result.returncode != 0:
                failed += 1
                print(result.stdout + result.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
