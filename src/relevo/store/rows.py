"""Stored rows back into the values they were saved from."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy.engine import RowMapping

T = TypeVar("T")


def from_row(cls: type[T], row: RowMapping, **given: Any) -> T:
    """An instance of the dataclass `cls` from the row's columns named like its fields;
    `given` supplies the fields whose stored form needs decoding first."""
    values = {f.name: given[f.name] if f.name in given else row[f.name] for f in fields(cls)}
    return cls(**values)
