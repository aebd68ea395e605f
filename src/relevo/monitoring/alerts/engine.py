"""The alert engine: signals in, alert states and notifications out. Pure: the caller passes the
stored tracks and open alerts, the silences, the clock and a maker of incident ids, and stores
what comes back.

- **Persistence**: each (deployment, rule, subject) keeps its recent evaluations; an alert fires
  when the latest one breaks the rule and `fire_after` of the last `window` did, and resolves
  after `clear_after` clear evaluations in a row. A signal with `evaluable=False` (too little
  data to judge) changes nothing: the state holds.
- **Incidents**: an alert that starts while others of the same deployment fire joins their
  incident; the incident clears when its last alert resolves.
- **Deduplication**: one notification when an incident opens, one more if it escalates to
  critical, one when it clears; alerts joining an open incident at the same severity are covered
  by its notification. Silenced alerts are kept but never notified.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from relevo.monitoring.alerts.rules import Rule, rule_of
from relevo.monitoring.alerts.state import Alert, Key, Notification, Silence, Track
from relevo.monitoring.signals import Signal

#: evaluations a track remembers (the stored column holds 64 characters)
MEMORY = 60


@dataclass(frozen=True)
class Outcome:
    """What one evaluation changed: the tracks observed, the alerts that started, changed or
    resolved, and the notifications to send."""

    tracks: tuple[Track, ...]
    alerts: tuple[Alert, ...]
    notifications: tuple[Notification, ...]


def silenced(alert: Alert, silences: Iterable[Silence], now: datetime) -> bool:
    return any(s.matches(alert, now) for s in silences)


def _severity(rule: Rule, signal: Signal) -> str:
    return "critical" if "critical" in (rule.severity, signal.severity) else "warning"


def observe(track: Track | None, signal: Signal, rule: Rule, now: datetime) -> Track | None:
    """The track after `signal` (None: nothing to record, a first signal that is not
    evaluable)."""
    if not signal.evaluable:
        return track
    recent = ((track.recent if track else "") + ("1" if signal.firing else "0"))[-MEMORY:]
    return Track(
        deployment=signal.deployment,
        rule=signal.rule,
        subject=signal.subject,
        recent=recent,
        firing=signal.firing,
        severity=_severity(rule, signal),
        message=signal.message,
        evaluated_at=now,
        value=signal.value,
        threshold=signal.threshold,
    )


def should_fire(track: Track, rule: Rule) -> bool:
    return track.firing and track.recent[-rule.window :].count("1") >= rule.fire_after


def should_resolve(track: Track, rule: Rule) -> bool:
    tail = track.recent[-rule.clear_after :]
    return len(tail) == rule.clear_after and "1" not in tail


def step(
    signals: Sequence[Signal],
    tracks: Mapping[Key, Track],
    open_alerts: Mapping[Key, Alert],
    rules_of: Callable[[str | None], Mapping[str, Rule]],
    silences: Sequence[Silence],
    now: datetime,
    new_incident: Callable[[], str],
    live: Iterable[str | None] | None = None,
    measured: Collection[tuple[str | None, str]] = (),
) -> Outcome:
    """One evaluation. `live`: the deployments that still exist (None: all of them); open
    alerts of any other deployment, or of a rule now disabled, resolve. `measured`: the
    (deployment, rule) pairs whose provider named every subject it measures in `signals`: an
    open alert of such a pair that got no signal is no longer measured, and resolves."""
    observed: dict[Key, Track] = {}
    for signal in signals:
        rule = rule_of(rules_of(signal.deployment), signal.rule)
        if not rule.enabled:
            continue
        key = (signal.deployment, signal.rule, signal.subject)
        track = observe(observed.get(key) or tracks.get(key), signal, rule, now)
        if track is not None:
            observed[key] = track

    working = dict(open_alerts)
    changed: dict[Key, Alert] = {}

    def incident_of(deployment: str | None) -> str:
        for a in working.values():
            if a.deployment == deployment and a.firing:
                return a.incident
        return new_incident()

    for key, track in observed.items():
        rule = rule_of(rules_of(track.deployment), track.rule)
        alert = working.get(key)
        if alert is None:
            if not should_fire(track, rule):
                continue
            alert = Alert(
                deployment=track.deployment,
                rule=track.rule,
                subject=track.subject,
                state="firing",
                severity=track.severity,
                message=track.message,
                incident=incident_of(track.deployment),
                started_at=now,
                updated_at=now,
                value=track.value,
                threshold=track.threshold,
            )
        elif should_resolve(track, rule):
            alert = replace(
                alert,
                state="resolved",
                resolved_at=now,
                updated_at=now,
                value=track.value,
                message=f"{alert.message} (resolved: {track.message})",
            )
        elif track.firing:
            alert = replace(
                alert,
                message=track.message,
                value=track.value,
                threshold=track.threshold,
                severity=track.severity,
                updated_at=now,
            )
        else:
            continue  # clear, but not for long enough yet: it keeps firing
        working[key] = changed[key] = alert

    alive = None if live is None else set(live)
    for key, alert in list(working.items()):
        if not alert.firing or key in changed:
            continue
        if alive is not None and alert.deployment is not None and alert.deployment not in alive:
            why = "the deployment is gone"
        elif not rule_of(rules_of(alert.deployment), alert.rule).enabled:
            why = "the rule is disabled"
        elif (alert.deployment, alert.rule) in measured and key not in observed:
            why = f"{alert.subject or alert.rule} is no longer measured"
        else:
            continue
        alert = replace(
            alert,
            state="resolved",
            resolved_at=now,
            updated_at=now,
            message=f"{alert.message} (resolved: {why})",
        )
        working[key] = changed[key] = alert

    notifications = _notify(working, changed, silences, now)
    for note in notifications:
        for a in note.alerts:
            if a.firing and not a.notified:
                working[a.key] = changed[a.key] = replace(a, notified=True)
    # alerts joining an incident already notified are covered by that notification
    notified_incidents = {a.incident for a in working.values() if a.firing and a.notified}
    for key, a in list(changed.items()):
        if (
            a.firing
            and not a.notified
            and a.incident in notified_incidents
            and not silenced(a, silences, now)
        ):
            working[key] = changed[key] = replace(a, notified=True)
    return Outcome(tuple(observed.values()), tuple(changed.values()), tuple(notifications))


def _notify(
    working: Mapping[Key, Alert],
    changed: Mapping[Key, Alert],
    silences: Sequence[Silence],
    now: datetime,
) -> list[Notification]:
    out: list[Notification] = []
    incidents: dict[str, list[Alert]] = {}
    for a in working.values():
        incidents.setdefault(a.incident, []).append(a)
    for incident, members in incidents.items():
        loud = [a for a in members if not silenced(a, silences, now)]
        # what the receivers know of: an incident whose loud alerts all cleared is resolved
        # for them, though a silenced one of it still fires (it was never sent)
        firing = [a for a in members if a.firing and a in loud]
        deployment = members[0].deployment
        if firing:
            new = [a for a in firing if not a.notified]
            if not new:
                continue
            before = [a for a in members if a.notified]
            if not before:
                out.append(Notification("firing", deployment, incident, tuple(firing), now))
            elif any(a.severity == "critical" for a in new) and not any(
                a.severity == "critical" for a in before
            ):
                out.append(Notification("escalated", deployment, incident, tuple(new), now))
            continue
        cleared = tuple(
            a for a in members if a.key in changed and a.notified and a in loud and not a.firing
        )
        if cleared:
            out.append(Notification("resolved", deployment, incident, cleared, now))
    return out
