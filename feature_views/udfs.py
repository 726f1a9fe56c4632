"""Python features (`udf:` in a view): each takes pyarrow arrays and returns one.

They run as DuckDB Arrow UDFs on the chosen source row, a batch at a time.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

_REGIONS = {"US": 0, "CA": 0, "GB": 1, "DE": 1, "FR": 1, "ES": 1, "IT": 1, "JP": 2, "KR": 2, "CN": 2, "BR": 3, "MX": 3}


def country_bucket(country: pa.Array) -> pa.Array:
    """Region code of a 2-letter country (4 = elsewhere, null stays null)."""
    return pa.array([None if c is None else _REGIONS.get(c, 4) for c in country.to_pylist()], pa.int32())


def price_band(price: pa.Array) -> pa.Array:
    """low / mid / high price band."""
    low = pc.less(price, 50.0)
    high = pc.greater_equal(price, 500.0)
    return pc.if_else(low, "low", pc.if_else(high, "high", "mid"))
