"""The demo's drift chapter over its real server: the traffic it sends drifts in age and
monthly charges, and both the service and the library call name exactly those; the HTML
report is written into the demo's home and opens offline."""

from __future__ import annotations

from pathlib import Path

from relevo.demo import Demo, DemoOptions, View
from relevo.demo.chapters import drift, register, serve, train


def test_the_drift_chapter_names_the_drifted_features(tmp_path: Path) -> None:
    options = DemoOptions(home=tmp_path / "home", customers=300, train_customers=4000)
    with Demo(options, View(quiet=True)) as demo:
        summary = demo.run([train.CHAPTER, register.CHAPTER, serve.CHAPTER, drift.CHAPTER])
    found = summary["drift"]
    assert found["drifted"] == ["age", "monthly_charges"]
    assert found["drifted_offline"] == ["age", "monthly_charges"]
    assert found["rows"] == drift.CUSTOMERS and not found["dataset_drift"]
    page = Path(found["html"])
    assert page.parent == options.home.resolve()
    html = page.read_text()
    assert "Drift of churn-drift" in html and "<script" not in html
