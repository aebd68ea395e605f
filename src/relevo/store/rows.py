"""Stored rows back into the values they were saved from."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy.engine import RowMapping

T = TypeVar("T")


def from_row(cls: type[T], row: RowMapping, **given: Any) -> T:
    """An instance of the dataclass `cls` from the row's columns named like its fields;
    `given` supplies the fields whose stored form needs decoding first."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]  # a dataclass, by contract
    values = {name: given[name] if name in given else row[name] for name in names}
    return cls(**values)
