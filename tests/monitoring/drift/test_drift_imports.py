"""What `relevo.drift` costs a data scientist's process: NumPy and pandas, not the server stack.

Each module loaded stays resident for the rest of the process and counts in the memory the
drift benchmark measures (docs/performance.md, "Drift"): the server stack (FastAPI,
SQLAlchemy, uvicorn...) would add over 100 MB to a process that holds NumPy and pandas, and
`scipy.stats` 60 MB, against about 1.5 MB for everything `relevo.drift` loads today.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter: the test session itself has long imported all of relevo.
SCRIPT = """
import json, sys
import numpy as np, pandas as pd
import relevo

rng = np.random.default_rng(0)
rows = 5000  # above the small-sample size, so the default tests are distances, as on big frames
reference = pd.DataFrame({
    "x": rng.normal(0, 1, rows),
    "c": pd.Series(rng.choice(["a", "b", "c"], rows), dtype="category"),
})
current = reference.assign(x=reference["x"] + 1.0)
report = relevo.drift(reference, current)
print(json.dumps({"drifted": report.drifted_features, "loaded": sorted(sys.modules)}))
"""

#: what neither `import relevo` nor a drift call between two DataFrames may load
NOT_LOADED = [
    # the server and the CLI, and what they stand on
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "prometheus_client",
    "typer",
    "sklearn",
    # SciPy's tests run only on small windows (KS, chi-square) and import it when they do
    "scipy",
    # relevo's own parts that a drift call does not use: models, serving, storage, HTTP
    "relevo.registry",
    "relevo.serving",
    "relevo.store",
    "relevo.server",
    "relevo.cli",
    "relevo.monitoring.reference",
]


def test_drift_between_frames_loads_no_server_stack() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    assert result["drifted"] == ["x"]
    loaded = set(result["loaded"])
    assert [name for name in NOT_LOADED if name in loaded] == []
