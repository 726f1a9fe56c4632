"""The naive reference of label windows (contract section 9), in plain loops.

A label window `w` of a row at `t` with group values `k` aggregates the events `e` with
`e.group = k` and `t < e.ts <= t + w`; the value over those events is the function's as for
features (tests/reference.py's `aggregate`: the registry's meaning of every function).
A day D is complete when a `dt=`-partitioned source has the partition of the day that holds
the instant D + 1 + w, any other source an event at or after it.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as R  # noqa: E402

DAY_US = 86_400 * R.US


def label_events(rows: list[dict], group_by: list[str], key: dict, t: int, w: int) -> list[dict]:
    """The events of the window after a row at `t` (`_ts` in microseconds), in source order."""
    if any(key[g] is None for g in group_by):
        return []  # `e.group = k` with k null matches nothing
    out = []
    for e in rows:
        if e["_ts"] is None:
            continue
        if not all(e[g] is not None and e[g] == key[g] for g in group_by):
            continue
        if t < e["_ts"] <= t + w:  # strictly after the row, up to and including t + w
            out.append(e)
    return out


def label_value(function: str, events: list[dict], column: str | None, k: int | None, col_type) -> object:
    return R.aggregate(function, events, column, k, col_type)


def is_complete(day: dt.date, w_us: int, partitions: set[dt.date] | None, latest_us: int | None) -> bool:
    """Whether day `day` is complete: `partitions` for a dt= source, else the latest event."""
    horizon = R.day_start_us(day) + DAY_US + w_us
    if partitions is not None:
        need = dt.date(1970, 1, 1) + dt.timedelta(microseconds=horizon)
        return need in partitions
    return latest_us is not None and latest_us >= horizon
