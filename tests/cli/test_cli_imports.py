"""What starting the `relevo` command costs: every command (`relevo --help` too) imports the
CLI's modules, so SciPy and scikit-learn (about 1 s and 75 MB on a 2-core machine) are loaded
only by the commands that compute with them (validation metrics, drift, feedback analyses,
rollout gates), not at start. Measured: `relevo --help` took 2.3-2.4 s and 237 MB with them
loaded at start, 1.2-1.25 s and 162 MB without."""

from __future__ import annotations

import json
import subprocess
import sys

# A fresh interpreter: the test session itself has long imported all of relevo.
SCRIPT = """
import json, sys
import relevo.cli.main
print(json.dumps(sorted(sys.modules)))
"""


def test_the_cli_starts_without_scipy_or_scikit_learn() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "relevo.cli.validate" in loaded and "relevo.cli.alerts" in loaded  # all commands
    heavy = sorted(m for m in loaded if m.split(".")[0] in ("scipy", "sklearn"))
    assert heavy == [], f"imported when the CLI starts: {heavy[:10]}"


def test_the_python_client_loads_without_the_store_or_the_models() -> None:
    """`relevo.Client` talks HTTP: importing it loads neither SQLAlchemy nor the registry (it
    checks names by the same rule, from `relevo.names`)."""
    script = "import json, sys\nimport relevo.client\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    heavy = sorted(
        m
        for m in loaded
        if m.split(".")[0] in ("sqlalchemy", "alembic", "scipy", "sklearn")
        or m.startswith(("relevo.store", "relevo.registry.registry", "relevo.routing.service"))
    )
    assert heavy == [], f"imported with relevo.client: {heavy[:10]}"
