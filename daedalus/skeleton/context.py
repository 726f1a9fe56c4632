"""What every operator of a day job shares: the DuckDB connection, the day, its files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from daedalus import arrowtypes as at
from daedalus.plan import Plan
from daedalus.sources import read_parquet_sql, select_files, sql_ident, sql_str, timestamp_sql


def lock_down(con: duckdb.DuckDBPyConnection, readable: Iterable[str | Path], temp_directory: str | Path) -> None:
    """Leave the day job's DuckDB able to read only its own files and spill to its temp dir.

    Feature expressions are checked at compile time (daedalus/expressions.py); this is the
    second wall: with external access off, no query of the job can read another file, write
    one (COPY), attach a database, install or load an extension, and with the configuration
    locked no query can turn any of that back on.
    """
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET allowed_paths = ?", [sorted({Path(p).as_posix() for p in readable})])
    con.execute("SET allowed_directories = ?", [[Path(temp_directory).as_posix().rstrip("/") + "/"]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def ts_literal(t: dt.datetime) -> str:
    return f"TIMESTAMP {sql_str(t.strftime('%Y-%m-%d %H:%M:%S.%f'))}"


def interval_sql(micros: int) -> str:
    return f"INTERVAL {sql_str(f'{micros} microseconds')}"


def table(name: str) -> str:
    """The DuckDB table holding an operator's result."""
    return sql_ident(f"t:{name}")


@dataclass
class DayContext:
    con: duckdb.DuckDBPyConnection
    plan: Plan
    day: dt.date
    files: dict[str, list[str]]  # per source id: the files this day job may read
    output_root: Path
    run_days: list[dt.date] = field(default_factory=list)
    _types: dict[tuple[str, ...], dict[str, str]] = field(default_factory=dict)
    _empty: set[str] = field(default_factory=set)
    no_rows: bool = False  # the day's spine is empty: every operator computes on empty sources
    # Per operator, the state files it reads instead of raw events (daedalus.skeleton.state).
    states: dict[str, dict[dt.date, Path]] = field(default_factory=dict)

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.day, dt.time())

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(days=1)

    def source_files(self, sid: str, lookback_days: int | None, lookahead_days: int = 0) -> list[str]:
        """The subset of the job's files for partitions day-lookback..day+lookahead (all when unpartitioned)."""
        return select_files(self.files.get(sid, []), self.day, lookback_days, lookahead_days)

    def relation(self, sid: str, files: list[str]) -> tuple[str, bool]:
        """SQL for reading `files` (or an empty relation of the source's schema) and whether it is empty.

        The empty relation is a table of the plan's column types, so a day whose look-back has
        no file of a source opens no file outside its own inputs.
        """
        if files and not self.no_rows:
            return read_parquet_sql(files), False
        name = f"__empty:{sid}"
        if name not in self._empty:
            cols = [pa.field(c, at.from_str(t)) for c, t in self.plan.sources[sid].columns.items()]
            schema = pa.schema(cols + [pa.field("filename", pa.string()), pa.field("file_row_number", pa.int64())])
            self.con.register(name, schema.empty_table())
            self._empty.add(name)
        return sql_ident(name), True

    def column_types(self, relation: str) -> dict[str, str]:
        key = (relation,)
        if key not in self._types:
            rows = self.con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
            self._types[key] = {r[0]: r[1] for r in rows}
        return self._types[key]

    def ts_expr(self, relation: str, column: str, where: str) -> str:
        return timestamp_sql(column, self.column_types(relation)[column], where)

    def value_expr(self, relation: str, column: str) -> str:
        """A source column as operators see it: timestamps as UTC TIMESTAMP, others as stored."""
        t = self.column_types(relation)[column].upper()
        if t.startswith("TIMESTAMP"):
            return timestamp_sql(column, t, column)
        return sql_ident(column)
