"""The aggregation functions, one entry each: the single place that says what a function is.

For each function: the parameters it takes, whether it needs a `column` and which column
types it accepts, its output type, its empty-window value, how the data-quality stats count
a window as covered, and whether (and how) it merges exactly from per-(group, ts) partial
aggregates. The YAML model's choices (daedalus.definitions), the compile checks
(daedalus.compile), the writer's empty values, the stats, the engines' dispatch and the
reference docs (docs/reference.md) all read this table.

Engines register an implementation per function (daedalus.skeleton.windows for `sql`,
daedalus.skeleton.windows_py for `pythonic`); a function an engine lacks is a compile error
for a plan that asks that engine for it (`unsupported`). Adding a function is: one entry
here, one implementation per engine (or a declared lack), and its reference in
tests/reference.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from daedalus import arrowtypes as at


def _numeric(t: pa.DataType) -> bool:
    return at.is_numeric_or_bool(t)


def _any(t: pa.DataType) -> bool:
    return True


@dataclass(frozen=True)
class AggFunction:
    name: str
    summary: str  # the value, in the docs' words
    output: Callable[[pa.DataType | None], pa.DataType]
    empty: str  # the empty-window value, in the docs' words
    empty_sql: str | None  # ... as a SQL literal (None: null)
    column: str = "required"  # "required" | "optional" (count)
    params: tuple[str, ...] = ()  # required parameters, e.g. ("k",)
    accepts: Callable[[pa.DataType], bool] = _any
    accepts_text: str = "any column"
    coverage: str | None = "valid"  # how stats tell a covered window: "nonzero", "nonempty", "valid", None
    merge: str | None = None  # merged from partials: "count", "sum", "mean", "min", "max"; None: raw only
    merge_needs_exact: bool = False  # merges exactly only over exact (integer/bool) values


def _list_of(t: pa.DataType | None) -> pa.DataType:
    assert t is not None
    return pa.list_(at.logical(t))


def _same(t: pa.DataType | None) -> pa.DataType:
    assert t is not None
    return at.logical(t)


def _sum_type(t: pa.DataType | None) -> pa.DataType:
    assert t is not None
    return at.sum_type(t)


FUNCTIONS: dict[str, AggFunction] = {
    f.name: f
    for f in [
        AggFunction(
            "count",
            "number of events (with `column`: of non-null values)",
            lambda t: pa.int64(),
            "0",
            "0",
            column="optional",
            coverage="nonzero",
            merge="count",
        ),
        AggFunction(
            "count_distinct", "distinct non-null values of `column`", lambda t: pa.int64(), "0", "0", coverage="nonzero"
        ),
        AggFunction(
            "sum",
            "sum of non-null `column` (bool as 0/1); int64 for integers and bools, float64 for floats and decimals",
            _sum_type,
            "0",
            "0",
            accepts=_numeric,
            accepts_text="a numeric or bool column",
            coverage=None,
            merge="sum",
            merge_needs_exact=True,
        ),
        AggFunction(
            "mean",
            "mean of non-null `column`, float64",
            lambda t: pa.float64(),
            "null",
            None,
            accepts=_numeric,
            accepts_text="a numeric or bool column",
            merge="mean",
            merge_needs_exact=True,
        ),
        AggFunction("min", "smallest non-null `column`, the column's type", _same, "null", None, merge="min"),
        AggFunction("max", "largest non-null `column`, the column's type", _same, "null", None, merge="max"),
        AggFunction(
            "last", "most recent non-null `column` (ties: later source order), the column's type", _same, "null", None
        ),
        AggFunction(
            "first",
            "earliest non-null `column` in the window (ties: earlier source order), the column's type",
            _same,
            "null",
            None,
        ),
        AggFunction(
            "last_k",
            "up to `k` most recent non-null values of `column`, most recent first, a list of the column's type",
            _list_of,
            "empty list",
            "[]",
            params=("k",),
            coverage="nonempty",
        ),
    ]
}

NAMES: tuple[str, ...] = tuple(FUNCTIONS)


def get(name: str) -> AggFunction:
    return FUNCTIONS[name]


def unsupported(engine_functions: dict[str, object]) -> set[str]:
    """The functions an engine has no implementation for."""
    return set(FUNCTIONS) - set(engine_functions)


def reference_table() -> str:
    """The docs' table of the functions (docs/reference.md and docs/concepts.md)."""
    lines = ["| function | value | empty window | parameters |", "|---|---|---|---|"]
    for f in FUNCTIONS.values():
        params = ", ".join(f"`{p}`" for p in f.params) or ("`column` optional" if f.column == "optional" else "-")
        lines.append(f"| `{f.name}` | {f.summary} | {f.empty} | {params} |")
    return "\n".join(lines)
