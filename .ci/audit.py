"""Say plainly what `pip-audit -f json` (on stdin) found, or that it could not look.

The argument, when given, is the file holding pip-audit's stderr (quoted when it gave no report).

Exit 1 when a dependency has a known vulnerability; 0 otherwise, including when the
vulnerability data could not be reached (every dependency skipped): CI then says so loudly
instead of passing as if the audit had been clean.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    raw = sys.stdin.read()
    try:
        report = json.loads(raw)
    except ValueError:
        print("NOTE: pip-audit gave no report: dependencies were NOT audited. Its last words:")
        errors = Path(sys.argv[1]).read_text() if len(sys.argv) > 1 else raw
        print("\n".join(errors.strip().splitlines()[-2:]))
        return 0
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if "skip_reason" in d]
    audited = [d for d in deps if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    if deps and not audited:
        print(
            f"NOTE: pip-audit could not reach vulnerability data for any of the {len(deps)} "
            "installed packages (e.g. "
            f"{skipped[0]['skip_reason']!r}): dependencies were NOT audited."
        )
        return 0
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        print(f"VULNERABLE: {dep['name']} {dep['version']}: {ids}")
    if skipped:
        names = ", ".join(d["name"] for d in skipped)
        print(f"NOTE: pip-audit could not audit {len(skipped)} package(s): {names}")
    print(
        f"pip-audit: {len(audited)} packages audited, {len(vulnerable)} with known vulnerabilities."
    )
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
