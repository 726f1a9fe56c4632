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


def categorical(t: pa.DataType) -> bool:
    # Types whose values print the same in DuckDB and Arrow, so a histogram's keys agree.
    t = at.logical(t)
    return pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)


@dataclass(frozen=True)
class AggFunction:
    name: str
    summary: str  # the value, in the docs' words
    output: Callable[[pa.DataType | None], pa.DataType]
    empty: str  # the empty-window value, in the docs' words
    empty_sql: str | None  # ... as a SQL literal (None: null)
    column: str = "required"  # "required" | "optional" (count)
    params: tuple[str, ...] = ()  # required parameters, e.g. ("k",)
    optional: tuple[str, ...] = ()  # optional parameters, e.g. ("top_n",)
    accepts: Callable[[pa.DataType], bool] = _any
    accepts_text: str = "any column"
    coverage: str | None = "valid"  # how stats tell a covered window: "nonzero", "nonempty", "valid", None
    merge: str | None = None  # merged from partials: "count", "sum", "mean", "min", "max"; None: raw only
    merge_needs_exact: bool = False  # merges exactly only over exact (integer/bool) values
    merge_text: str = "none: computed from the window's events"  # the merge rule, in the docs' words
    approximate: str | None = None  # for approximate functions: the error bound, in the docs' words


def _list_of(t: pa.DataType | None) -> pa.DataType:
    assert t is not None
    return pa.list_(at.logical(t))


def _same(t: pa.DataType | None) -> pa.DataType:
    assert t is not None
    return at.logical(t)


def _sum_type(t: pa.DataType | None) -> pa.DataType:
    assert t is not None
    return at.sum_type(t)


def _float(t: pa.DataType | None) -> pa.DataType:
    return pa.float64()


HISTOGRAM_TYPE = pa.map_(pa.string(), pa.int64())
NUMERIC = {"accepts": _numeric, "accepts_text": "a numeric or bool column"}


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
            merge_text="sum of the partial counts",
        ),
        AggFunction(
            "count_distinct",
            "distinct non-null values of `column`",
            lambda t: pa.int64(),
            "0",
            "0",
            coverage="nonzero",
            merge_text="kept events: each distinct value's newest event in the window before the day",
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
            merge_text="sum of the partial sums (integers and bools; float sums read the events)",
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
            merge_text="partial sums over partial counts (integers and bools)",
        ),
        AggFunction(
            "min",
            "smallest non-null `column`, the column's type",
            _same,
            "null",
            None,
            merge="min",
            merge_text="min of the partial mins",
        ),
        AggFunction(
            "max",
            "largest non-null `column`, the column's type",
            _same,
            "null",
            None,
            merge="max",
            merge_text="max of the partial maxes",
        ),
        AggFunction(
            "last",
            "most recent non-null `column` (ties: later source order), the column's type",
            _same,
            "null",
            None,
            merge_text="kept events: the newest non-null value per group in the window before the day",
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
            merge_text="kept events: the `k` newest non-null values per group in the window before the day",
        ),
        AggFunction(
            "first_k",
            "up to `k` oldest non-null values of `column`, oldest first (ties: earlier source order), "
            "a list of the column's type",
            _list_of,
            "empty list",
            "[]",
            params=("k",),
            coverage="nonempty",
        ),
        AggFunction(
            "last_distinct_k",
            "up to `k` distinct non-null values of `column`, by most recent occurrence first, "
            "a list of the column's type",
            _list_of,
            "empty list",
            "[]",
            params=("k",),
            coverage="nonempty",
        ),
        AggFunction(
            "top_k",
            "the `k` largest non-null values of `column`, largest first (duplicates kept), a list of the column's type",
            _list_of,
            "empty list",
            "[]",
            params=("k",),
            coverage="nonempty",
        ),
        AggFunction(
            "bottom_k",
            "the `k` smallest non-null values of `column`, smallest first (duplicates kept), "
            "a list of the column's type",
            _list_of,
            "empty list",
            "[]",
            params=("k",),
            coverage="nonempty",
        ),
        AggFunction(
            "variance",
            "population variance (divide by n) of non-null `column`, float64",
            _float,
            "null",
            None,
            **NUMERIC,  # type: ignore[arg-type]
        ),
        AggFunction(
            "stddev",
            "population standard deviation (square root of `variance`) of non-null `column`, float64",
            _float,
            "null",
            None,
            **NUMERIC,  # type: ignore[arg-type]
        ),
        AggFunction(
            "skew",
            "population skewness m3 / m2^1.5 (central moments, divide by n) of non-null `column`, float64; "
            "null when the values are all equal",
            _float,
            "null",
            None,
            **NUMERIC,  # type: ignore[arg-type]
        ),
        AggFunction(
            "kurtosis",
            "population excess kurtosis m4 / m2^2 - 3 of non-null `column`, float64; null when the values are all equal",
            _float,
            "null",
            None,
            **NUMERIC,  # type: ignore[arg-type]
        ),
        AggFunction(
            "approx_count_distinct",
            "distinct non-null values of `column`, estimated by a HyperLogLog sketch (DuckDB's), int64",
            lambda t: pa.int64(),
            "0",
            "0",
            coverage="nonzero",
            approximate=(
                "relative standard error about 3% (measured over 300 sets of 100 to 200,000 values: "
                "standard deviation 3.0%, 99th percentile 7.6%, worst 9.9%; a few values can be off by one). "
                "The sketch depends only on the set of values, so day boundaries, files, workers and "
                "event order never change the result"
            ),
        ),
        AggFunction(
            "approx_percentile",
            "the `q`-quantile of non-null `column` by nearest rank: the value at rank max(1, ceil(q * n)) "
            "of the sorted values, the column's type",
            _same,
            "null",
            None,
            params=("q",),
            accepts=_numeric,
            accepts_text="a numeric or bool column",
            approximate="none: the nearest-rank quantile is computed exactly (rank error 0)",
        ),
        AggFunction(
            "histogram",
            "map<string, int64> of each non-null value of `column` (as a string) to its count, keys sorted; "
            "with `top_n`, only the `top_n` most frequent (ties: smaller key)",
            lambda t: HISTOGRAM_TYPE,
            "empty map",
            "CAST(MAP {} AS MAP(VARCHAR, BIGINT))",
            optional=("top_n",),
            accepts=categorical,
            accepts_text="a string, integer or bool column",
            coverage="nonempty",
        ),
        AggFunction(
            "time_since_last",
            "seconds from the most recent event (with `column`: with non-null `column`) to the row's `t`, float64",
            _float,
            "null",
            None,
            column="optional",
        ),
        AggFunction(
            "exp_decay_sum",
            "sum of non-null `column * 0.5 ** ((t - ts) / half_life)` (bool as 0/1), float64",
            _float,
            "0",
            "0",
            params=("half_life",),
            accepts=_numeric,
            accepts_text="a numeric or bool column",
            coverage=None,
        ),
    ]
}

NAMES: tuple[str, ...] = tuple(FUNCTIONS)
# Every parameter some function takes (the YAML model's and the plan's fields).
PARAMS: tuple[str, ...] = ("k", "q", "half_life", "top_n")


def get(name: str) -> AggFunction:
    return FUNCTIONS[name]


def unsupported(engine_functions: dict[str, object]) -> set[str]:
    """The functions an engine has no implementation for."""
    return set(FUNCTIONS) - set(engine_functions)


def reference_table(engines: dict[str, set[str]] | None = None) -> str:
    """The docs' table of the functions (docs/reference.md and docs/concepts.md); `engines`:
    engine -> the functions it computes, for an engines column."""
    lines = [
        "| function | value | empty window | parameters | merge from per-day partials |"
        + (" engines |" if engines else ""),
        "|---|---|---|---|---|" + ("---|" if engines else ""),
    ]
    for f in FUNCTIONS.values():
        params = [f"`{p}`" for p in f.params] + [f"`{p}` optional" for p in f.optional]
        if f.column == "optional":
            params.append("`column` optional")
        value = f.summary + (f"; error bound: {f.approximate}" if f.approximate else "")
        row = f"| `{f.name}` | {value} | {f.empty} | {', '.join(params) or '-'} | {f.merge_text} |"
        if engines:
            row += " " + ", ".join(e for e, names in engines.items() if f.name in names) + " |"
        lines.append(row)
    return "\n".join(lines)
