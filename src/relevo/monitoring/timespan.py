"""Time windows as people write them: "24h", "30m", "7d", "90s", "2w", or an ISO timestamp."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from relevo.errors import InvalidInputError, Problem

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: the longest duration taken: a century (longer ones reach before the calendar's first year)
LONGEST = timedelta(days=36525)


def parse_duration(text: str, field: str = "since") -> timedelta:
    """ "24h" -> 24 hours; s, m, h, d and w (weeks) are understood."""
    match = _DURATION.match(text if isinstance(text, str) else "")
    if not match or float(match.group(1)) <= 0:
        raise InvalidInputError(
            f"invalid {field} {text!r}",
            [Problem("a duration such as 30m, 24h or 7d, or an ISO timestamp", option=field)],
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > LONGEST.total_seconds():
        raise InvalidInputError(
            f"invalid {field} {text!r}",
            [Problem("a duration of at most 100 years (36525d)", option=field)],
        )
    return timedelta(seconds=seconds)


def parse_time(text: str, now: datetime, field: str = "since") -> datetime:
    """A point in time: a duration back from `now` ("24h") or an ISO timestamp (UTC when it
    names no zone)."""
    if isinstance(text, str) and _DURATION.match(text):
        return now - parse_duration(text, field)
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"invalid {field} {text!r}",
            [Problem("a duration such as 30m, 24h or 7d, or an ISO timestamp", option=field)],
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
