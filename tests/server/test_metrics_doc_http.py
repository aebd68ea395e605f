"""Every metric a live server exposes on /metrics is in docs/serving.md's table, with the labels
the table names, and every metric the table names is exposed."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
_ENTRY = re.compile(r"`(relevo_[a-z_]+)(?:\{([a-z_,]*)\})?`")


def _documented() -> dict[str, set[str]]:
    """The metrics of the table under "## Metrics": name (as exposed, without `_total`) to
    its labels."""
    section = DOC.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    found: dict[str, set[str]] = {}
    for line in section.splitlines():
        if not line.startswith("| `relevo_"):
            continue
        cell = line.split("|")[1]
        for name, labels in _ENTRY.findall(cell):
            found[name.removesuffix("_total")] = set(filter(None, labels.split(",")))
    return found


def test_the_metrics_table_names_every_exposed_metric_with_its_labels(live_server):
    deadline = time.monotonic() + 10
    while "relevo_alert_firing" not in (text := httpx.get(f"{live_server.url}/metrics").text):
        assert time.monotonic() < deadline, "the alert gauges never came (the first evaluation)"
        time.sleep(0.05)
    families = list(text_string_to_metric_families(text))  # valid Prometheus text
    exposed = {
        f.name for f in families if f.name.startswith("relevo_") and not f.name.endswith("_created")
    }
    documented = _documented()
    assert exposed == set(documented), (
        f"exposed, not documented: {sorted(exposed - set(documented))}; "
        f"documented, not exposed: {sorted(set(documented) - exposed)}"
    )
    for name, labels in documented.items():
        collector = REGISTRY._names_to_collectors[name]  # type: ignore[attr-defined]
        assert set(collector._labelnames) == labels, name
