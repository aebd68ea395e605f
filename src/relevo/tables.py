"""Reading and writing the tabular files users hand to relevo (CSV, Parquet, JSON lines)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd

from relevo.errors import InvalidInputError
from relevo.private import private_file

READABLE = (".csv", ".parquet", ".pq", ".jsonl", ".json")


def read_table(path: Path | str, what: str = "file") -> pd.DataFrame:
    """A DataFrame from a .csv, .parquet or .jsonl file, or an error naming the file."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{what} not found: {path}")
    if path.is_dir():
        raise InvalidInputError(f"{what} {path} is a directory, expected a file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = _codes_as_text(path, pd.read_csv(path))
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix == ".jsonl":
            frame = pd.read_json(path, lines=True)
        elif suffix == ".json":
            frame = pd.read_json(path)
        else:
            raise InvalidInputError(
                f"cannot read {what} {path}: unknown file type {suffix or '(none)'}; "
                f"use one of {', '.join(READABLE)}"
            )
    except InvalidInputError:
        raise
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{what} {path} is empty") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"cannot read {what} {path}: {first}") from exc
    return frame


#: text pandas reads as a number though it is a code: a zero that leads digits ("01", "007")
LEADING_ZERO = r"^\s*[+-]?0\d"


def _codes_as_text(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the number columns whose text has a leading zero as that text: "01",
    "02", "10" are codes (a plan, a zip code, an ID), and as numbers they would lose what
    tells them apart from what a model was fitted on."""
    numeric = [
        c
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c].dtype)
        and not pd.api.types.is_bool_dtype(frame[c].dtype)
    ]
    if not numeric or frame.columns.duplicated().any():
        return frame
    raw = pd.read_csv(path, usecols=numeric, dtype=str)
    codes = [c for c in numeric if raw[c].str.match(LEADING_ZERO, na=False).any()]
    if codes:
        frame = frame.assign(**{str(c): raw[c] for c in codes})
    return frame


def write_table(frame: pd.DataFrame, path: Path | str, private: bool = False) -> Path:
    """Write `frame` as .csv or .parquet, chosen by the file's suffix; `private`: a 0600 file
    (one that holds the prediction log), else the mode of the file it replaces, if any."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InvalidInputError(
            f"cannot write {path}: unknown file type {suffix or '(none)'}; use .csv or .parquet"
        )
    if path.parent and not path.parent.exists():
        raise InvalidInputError(f"cannot write {path}: folder {path.parent} does not exist")
    # written beside it, then renamed: a write that fails or is stopped (Ctrl-C, a full disk)
    # leaves no cut file at `path`, and an earlier file there as it was
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.unlink(missing_ok=True)
        if private:  # 0600 before a byte is written into it
            private_file(partial)
        elif path.exists():
            mode = stat.S_IMODE(path.stat().st_mode)
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT, mode))
        if suffix == ".csv":
            frame.to_csv(partial, index=False)
        else:
            frame.to_parquet(partial, index=False)
        os.replace(partial, path)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InvalidInputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    return path
