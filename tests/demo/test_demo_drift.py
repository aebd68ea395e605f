"""The demo's drift chapter over its real server: the traffic it sends drifts in age and
monthly charges, and both the service and the library call name exactly those; the HTML
report is written into the demo's home and opens offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from relevo.demo import Demo, DemoOptions, View, story
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


def test_a_second_run_reports_the_version_it_deploys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run finds churn-drift serving the first run's version; with a server slow to
    follow the store, the chapter waits for the new version before it sends the traffic, and
    reports the drift of that version over all of it."""
    settings = story.demo_settings

    def slow(home: Path):  # type: ignore[no-untyped-def]
        return settings(home).model_copy(update={"poll_interval_s": 3.0})

    monkeypatch.setattr(story, "demo_settings", slow)
    options = DemoOptions(home=tmp_path / "home", customers=300, train_customers=4000)
    chapters = [train.CHAPTER, register.CHAPTER, serve.CHAPTER, drift.CHAPTER]
    found = []
    for _ in range(2):
        with Demo(options, View(quiet=True)) as demo:
            found.append(demo.run(chapters)["drift"])
    assert [f["model"] for f in found] == ["churn:1", "churn:2"]
    assert [f["rows"] for f in found] == [drift.CUSTOMERS, drift.CUSTOMERS]
