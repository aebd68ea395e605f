"""Prometheus' configuration and relevo's alerting rules pass promtool (Debian's prometheus
package), and the rules fire on the series they are written for (promtool's rule tests)."""

from __future__ import annotations

import subprocess

from deployfiles import PROMETHEUS, tool


def _promtool(*args: str) -> str:
    promtool = tool("promtool", "apt-get install prometheus")
    done = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_prometheus_config_is_valid_and_loads_the_rules():
    out = _promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in out


def test_the_alerting_rules_are_valid():
    out = _promtool("check", "rules", "relevo-rules.yml")
    assert "SUCCESS: 9 rules found" in out


def test_the_alerting_rules_fire_as_written():
    assert "SUCCESS" in _promtool("test", "rules", "relevo-rules.test.yml")
