"""Durations and dates as the contract (section 1) defines them."""

from __future__ import annotations

import datetime as dt
import math
import re

_DURATION = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
DAY = dt.timedelta(days=1)


def parse_duration(text: str) -> dt.timedelta:
    """`90m`, `1h`, `7d`, `2w` -> timedelta; raises ValueError with the reason."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ValueError(
            f"invalid duration {text!r}: expected <positive int><unit>, unit one of s m h d w (e.g. 90m, 7d)"
        )
    return dt.timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def duration_micros(text: str) -> int:
    return int(parse_duration(text).total_seconds()) * 1_000_000


def lookback_days(duration: dt.timedelta) -> int:
    """Partitions before D a day-D job needs for a look-back of `duration`.

    A row at t in [D, D+1) reaches back to t - duration >= D - duration, so the earliest
    partition is D - ceil(duration / 1 day).
    """
    return math.ceil(duration / DAY)


def parse_month_or_day(text: str, *, end: bool) -> dt.date:
    """`YYYY-MM` (first or last day of the month) or `YYYY-MM-DD`."""
    s = str(text).strip()
    if re.fullmatch(r"\d{4}-\d{2}", s):
        year, month = int(s[:4]), int(s[5:7])
        if not 1 <= month <= 12:
            raise ValueError(f"invalid date {text!r}: month must be in 1..12")
        first = dt.date(year, month, 1)
        if not end:
            return first
        nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
        return nxt - DAY
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        try:
            return dt.date.fromisoformat(s)
        except ValueError as e:
            raise ValueError(f"invalid date {text!r}: {e}") from None
    raise ValueError(f"invalid date {text!r}: expected YYYY-MM or YYYY-MM-DD")


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
