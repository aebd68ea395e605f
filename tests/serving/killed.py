"""What a killed server process leaves behind, for the tests of what the next start does."""

from __future__ import annotations

from typing import Any

from relevo.serving.spool import Spool, store_folder


def left_in_the_spool(rv: Any, payloads: list[bytes]) -> None:
    """What a killed process leaves in the log's spool: a segment holding `payloads`."""
    segments = Spool(store_folder(rv.settings.home, rv.settings.resolved_database_url))
    for payload in payloads:
        segments.append(payload)
    for seg in segments._segments.values():  # kill -9: the segment stays, its lock goes
        seg.close()
    segments._segments.clear()
