"""Finding a source's files, its day partitions, and the SQL that reads them (contract section 2)."""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from daedalus import arrowtypes as at
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
    def scan(cls, path: str) -> SourceFiles:
        files = list_files(path)
        days = [partition_day(f) for f in files]
        if any(d is None for d in days):
            days = [None] * len(files)  # not (entirely) partitioned: every day reads every file
        return cls(path, tuple(files), tuple(days))

    @property
    def partitioned(self) -> bool:
        return bool(self.files) and self.days[0] is not None

    def select(self, days: list[dt.date], lookback: int | None, lookahead: int = 0) -> list[str]:
        """The files jobs for `days` (a contiguous range) read: partitions from the first day
        minus `lookback` (None: every earlier one) to the last day plus `lookahead` (label
        windows read forward); every file when the source is not partitioned by day. The one
        place that decides what a run reads."""
        if not self.partitioned:
            return list(self.files)
        hi = max(days) + dt.timedelta(days=lookahead)
        lo = None if lookback is None else min(days) - dt.timedelta(days=lookback)
        return [f for f, d in zip(self.files, self.days) if d is not None and d <= hi and (lo is None or d >= lo)]

    def for_day(self, day: dt.date, lookback: int | None, lookahead: int = 0) -> list[str]:
        """Files a day-`day` job reads: partitions day-lookback..day+lookahead (None: every earlier one)."""
        return self.select([day], lookback, lookahead)

    def has_partition(self, day: dt.date) -> bool:
        """Whether the source has a file in partition `dt=day`."""
        return day in self.days

    def nearest(self, days: list[dt.date]) -> list[str]:
        """Every file, nearest to the range first (the latest before it, then the earliest after)."""
        lo = min(days)
        before = sorted((f for f, d in zip(self.files, self.days) if d is not None and d < lo), reverse=True)
        after = [f for f, d in zip(self.files, self.days) if d is None or d >= lo]
        return before + after


def select_files(files: list[str], day: dt.date, lookback: int | None, lookahead: int = 0) -> list[str]:
    """Of a job's files, those of partitions day-lookback..day+lookahead (all unpartitioned ones)."""
    lo = None if lookback is None else day - dt.timedelta(days=lookback)
    hi = day + dt.timedelta(days=lookahead)
    out = []
    for f in files:
        d = partition_day(f)
        if d is None or (d <= hi and (lo is None or d >= lo)):
            out.append(f)
    return out


# Footers already read fine, by (path, size, mtime): a rerun with nothing changed then reads
# none, which keeps compile (run by `daeda` and again by every Snakemake invocation) cheap.
FOOTER_CACHE = Path(".daedalus_tmp/footer-types.json")
UNSUPPORTED = "?"  # prefix of a column type Daedalus has no logical type for (a struct, a map)


def _type_text(t: pa.DataType) -> str:
    lt = at.logical(t)
    return at.to_str(lt) if at.supported(lt) else UNSUPPORTED + str(t)


def column_type(text: str) -> pa.DataType | None:
    """A footer type text back as an Arrow type (None for an unsupported one)."""
    return None if text.startswith(UNSUPPORTED) else at.from_str(text)


def footer_columns(files: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """(file, {column: logical type text} of its parquet footer) for each file, in column
    order; an unreadable footer is an error that names the file."""
    try:
        cache = json.loads(FOOTER_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    fresh = {}
    try:
        for f in files:
            try:
                st = os.stat(f)
            except OSError as e:
                raise DaedalusError(f, f"cannot read: {e.strerror}") from None
            key = f"{os.path.abspath(f)}\t{st.st_size}\t{st.st_mtime_ns}"
            columns = cache.get(key)
            if not isinstance(columns, dict):
                if st.st_size == 0:
                    raise DaedalusError(f, "unreadable parquet: the file is empty (0 bytes)")
                try:
                    schema = pq.read_schema(f)
                except Exception as e:  # pyarrow raises several types for a bad file
                    raise DaedalusError(f, f"unreadable parquet: {' '.join(str(e).split())}") from None
                columns = {fld.name: _type_text(fld.type) for fld in schema}
                fresh[key] = columns
            yield f, columns
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


def _kind_of(text: str) -> str:
    t = column_type(text)
    return text if t is None else at.kind(t)


@dataclass
class SourceSchema:
    """A source's columns as the run's files hold them, checked file by file."""

    types: dict[str, pa.DataType | None]  # column -> logical type over the files (None: unsupported)
    first_file: str  # where each column's type was first seen
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable files outside the run, and why


def source_schema(sf: SourceFiles, needed: list[str], days: list[dt.date], timestamp_field: str) -> SourceSchema:
    """The schema of the files a run reads (`needed`), or of the nearest readable file when
    the run reads none of the source's partitions.

    Every needed file must be readable, hold the timestamp field, and give each column a
    type of the same kind (integer widths, decimal scales, timestamp units and zones and
    string encodings may differ; the result holds them all). Files the run does not read
    are never opened, except to find a schema for a source the run reads nothing of: an
    unreadable one of those is skipped (and reported in `skipped`), not an error.
    """
    if needed:
        seen: dict[str, tuple[str, str]] = {}  # column -> (kind, file)
        texts: dict[str, list[str]] = {}
        first = needed[0]
        for f, columns in footer_columns(needed):
            if timestamp_field not in columns:
                raise DaedalusError(f, f"column {timestamp_field!r} is missing (source {sf.path!r})")
            for name, text in columns.items():
                k = _kind_of(text)
                if name not in seen:
                    seen[name] = (k, f)
                elif seen[name][0] != k:
                    ref = texts[name][0]
                    raise DaedalusError(
                        f,
                        f"column {name!r} has type {text.lstrip(UNSUPPORTED)} here but "
                        f"{ref.lstrip(UNSUPPORTED)} in {seen[name][1]} (source {sf.path!r})",
                    )
                texts.setdefault(name, []).append(text)
        types: dict[str, pa.DataType | None] = {}
        for name, ts in texts.items():
            parsed = [column_type(x) for x in dict.fromkeys(ts)]
            types[name] = None if any(p is None for p in parsed) else at.unify([p for p in parsed if p is not None])
        return SourceSchema(types, first)
    skipped: list[tuple[str, str]] = []
    for f in sf.nearest(days):
        try:
            _, columns = next(footer_columns([f]))
        except DaedalusError as e:
            skipped.append((f, e.problem))
            continue
        return SourceSchema({n: column_type(x) for n, x in columns.items()}, f, skipped)
    f, problem = skipped[0]
    raise DaedalusError(f, f"{problem} (and no other file of source {sf.path!r} is readable)")


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
    return f"read_parquet({lst}, filename=true, file_row_number=true, hive_partitioning=false, union_by_name=true)"


# DuckDB's names of the types a parquet timestamp or date column reads as.
_NS_TYPES = ("TIMESTAMP_NS", "TIMESTAMPTZ_NS", "TIMESTAMP_NS WITH TIME ZONE")
_CASTABLE = ("TIMESTAMP", "TIMESTAMP_MS", "TIMESTAMP_S", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "DATE")


def timestamp_sql(column: str, duckdb_type: str, where: str) -> str:
    """SQL giving a UTC `TIMESTAMP` (microseconds) from a source timestamp of any unit/zone.

    Casting a nanosecond timestamp to TIMESTAMP rounds; the contract truncates, hence
    epoch_ns (which DuckDB has for TIMESTAMP_NS and TIMESTAMPTZ_NS alike). The session time
    zone is UTC, so a TIMESTAMPTZ cast gives the UTC wall clock; a DATE is its midnight.
    """
    c = sql_ident(column)
    t = duckdb_type.upper()
    if t in _NS_TYPES:
        ns = f"epoch_ns({c})"
        return f"make_timestamp(({ns} - (({ns} % 1000) + 1000) % 1000) // 1000)"
    if t in _CASTABLE:
        return f"CAST({c} AS TIMESTAMP)"
    raise DaedalusError(where, f"column {column!r} has type {duckdb_type}, expected a timestamp or a date")
