"""Alerts: rules judged on the signals of the providers, with persistence, incidents,
silences and notifiers (docs/alerts.md).

The engine (`engine.step`) is pure; `AlertService` (`relevo.monitoring.alerts.service`) runs
the providers, stores the states and sends the notifications; the server evaluates on a
schedule (`relevo.monitoring.alerts.evaluator`), one replica at a time.
"""

from relevo.monitoring.alerts.rules import DEFAULT_RULES, Rule, rules_for
from relevo.monitoring.alerts.state import Alert, Notification, Silence, Track

__all__ = ["DEFAULT_RULES", "Alert", "Notification", "Rule", "Silence", "Track", "rules_for"]
