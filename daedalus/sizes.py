"""Memory sizes as written in runtime.yaml ("4GB", "512MB", "2GiB"), binary units as DuckDB reads them."""

from __future__ import annotations

import re

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B?|B)?\s*", re.IGNORECASE)
_MB = {"": 1 / 1024 / 1024, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def size_mb(text: str) -> int:
    """Megabytes (MiB) of a size; ValueError when it is not one."""
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise ValueError(f"invalid size {text!r}: expected a number and a unit, e.g. 4GB or 512MB")
    unit = (m.group(2) or "MB").upper().rstrip("B").rstrip("I")
    return int(float(m.group(1)) * _MB[unit])


def check_size(text: str | None) -> str | None:
    if text is not None:
        size_mb(text)
    return text
