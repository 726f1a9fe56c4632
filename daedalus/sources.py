"""Finding a source's files, its day partitions, and the SQL that reads them (contract section 2)."""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from daedalus.errors import DaedalusError

_DT_PART = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})(?:/|$)")
_GLOB_CHARS = set("*?[")


def _visible(rel_parts: tuple[str, ...]) -> bool:
    # Hidden and underscore files are writer's scratch (temp files, _SUCCESS markers).
    return not any(p.startswith((".", "_")) for p in rel_parts)


def list_files(path: str) -> list[str]:
    """The parquet files of a source, in source order (lexical path order).

    Paths keep the form the user wrote (relative to the working directory), so that the
    compiled plan and Snakemake's inputs do not depend on where the checkout lives.
    """
    if any(c in path for c in _GLOB_CHARS):
        files = [f for f in glob.glob(path, recursive=True) if os.path.isfile(f)]
    elif os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
            for n in names:
                if n.endswith(".parquet") and not n.startswith((".", "_")):
                    files.append(os.path.join(root, n))
    elif os.path.isfile(path):
        files = [path]
    else:
        files = []
    return sorted(f.replace(os.sep, "/") for f in files)


def partition_day(file: str) -> dt.date | None:
    m = _DT_PART.search(file)
    return dt.date.fromisoformat(m.group(1)) if m else None


@dataclass(frozen=True)
class SourceFiles:
    """A source's files, with their `dt=` day when the source is hive-partitioned by day."""

    path: str
    files: tuple[str, ...]
    days: tuple[dt.date | None, ...]

    @classmethod
    def scan(cls, path: str) -> "SourceFiles":
        files = list_files(path)
        days = [partition_day(f) for f in files]
        if any(d is None for d in days):
            days = [None] * len(files)  # not (entirely) partitioned: every day reads every file
        return cls(path, tuple(files), tuple(days))

    @property
    def partitioned(self) -> bool:
        return bool(self.files) and self.days[0] is not None

    def for_day(self, day: dt.date, lookback: int | None) -> list[str]:
        """Files a day-`day` job reads: partitions day-lookback..day (None: every earlier one)."""
        if not self.partitioned:
            return list(self.files)
        lo = None if lookback is None else day - dt.timedelta(days=lookback)
        return [f for f, d in zip(self.files, self.days) if d <= day and (lo is None or d >= lo)]

    def for_days(self, days: list[dt.date]) -> list[str]:
        if not self.partitioned:
            return list(self.files)
        wanted = set(days)
        return [f for f, d in zip(self.files, self.days) if d in wanted]


def read_schema(path: str, files: list[str] | tuple[str, ...], where: str) -> pa.Schema:
    """The schema of a source (its first file); errors name the file."""
    if not files:
        raise DaedalusError(where, f"source {path!r} has no parquet files")
    try:
        return pq.read_schema(files[0])
    except Exception as e:  # pyarrow raises several types for a bad file
        raise DaedalusError(files[0], f"unreadable parquet: {e}") from None


# Footers already read fine, by (path, size, mtime): a rerun with nothing changed then reads
# none, which keeps compile (run by `daeda` and again by every Snakemake invocation) cheap.
FOOTER_CACHE = Path(".daedalus_tmp/footers.json")


def type_kind(t: pa.DataType) -> str:
    """A type up to what reading files together reconciles (integer widths, timestamp units)."""
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "floating"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"list<{type_kind(t.value_type)}>"
    return str(t)


def footer_columns(files: list[str]) -> Iterator[tuple[str, dict[str, tuple[str, str]]]]:
    """(file, {column: (type kind, type)} of its parquet footer) for each file, in column
    order; an unreadable footer is an error."""
    try:
        cache = json.loads(FOOTER_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    fresh = {}
    try:
        for f in files:
            st = os.stat(f)
            key = f"{os.path.abspath(f)}\t{st.st_size}\t{st.st_mtime_ns}"
            columns = cache.get(key)
            if not isinstance(columns, dict):
                try:
                    schema = pq.read_schema(f)
                except Exception as e:  # pyarrow raises several types for a bad file
                    raise DaedalusError(f, f"unreadable parquet: {' '.join(str(e).split())}") from None
                columns = {fld.name: (type_kind(fld.type), str(fld.type)) for fld in schema}
                fresh[key] = columns
            yield f, {name: tuple(kt) for name, kt in columns.items()}
    finally:
        if fresh:
            try:
                FOOTER_CACHE.parent.mkdir(parents=True, exist_ok=True)
                tmp = FOOTER_CACHE.with_name(f".{FOOTER_CACHE.name}.{os.getpid()}.tmp")
                merged = {**cache, **fresh}
                tmp.write_text(json.dumps(merged if len(merged) < 200_000 else fresh))
                os.replace(tmp, FOOTER_CACHE)
            except OSError:
                pass  # the cache only saves time


def sql_str(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def read_parquet_sql(files: list[str]) -> str:
    """A DuckDB relation over explicit files, with what source order needs.

    hive_partitioning is off so that `dt` never becomes a column; union_by_name lets a
    column's physical type vary between files (e.g. timestamp units).
    """
    if not files:
        raise ValueError("read_parquet_sql needs at least one file")
    lst = "[" + ", ".join(sql_str(Path(f).as_posix()) for f in files) + "]"
    return (
        f"read_parquet({lst}, filename=true, file_row_number=true, "
        "hive_partitioning=false, union_by_name=true)"
    )


def timestamp_sql(column: str, duckdb_type: str, where: str) -> str:
    """SQL giving a UTC `TIMESTAMP` (microseconds) from a source timestamp of any unit/zone.

    Casting TIMESTAMP_NS to TIMESTAMP rounds; the contract truncates, hence epoch_ns.
    The session time zone is UTC, so a TIMESTAMPTZ cast gives the UTC wall clock.
    """
    c = sql_ident(column)
    t = duckdb_type.upper()
    if t == "TIMESTAMP_NS":
        ns = f"epoch_ns({c})"
        return f"make_timestamp(({ns} - (({ns} % 1000) + 1000) % 1000) // 1000)"
    if t in ("TIMESTAMP", "TIMESTAMP_MS", "TIMESTAMP_S", "TIMESTAMP WITH TIME ZONE", "DATE"):
        return f"CAST({c} AS TIMESTAMP)"
    raise DaedalusError(where, f"column {column!r} has type {duckdb_type}, expected a timestamp")
