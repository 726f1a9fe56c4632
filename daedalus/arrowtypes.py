"""Arrow types as short, stable strings (the compiled plan is YAML a person edits)."""

from __future__ import annotations

import re

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")

_SIMPLE: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float32": pa.float32(), "float64": pa.float64(), "halffloat": pa.float16(),
    "string": pa.string(), "large_string": pa.large_string(),
    "binary": pa.binary(), "large_binary": pa.large_binary(),
    "date32": pa.date32(),
}
_NAMES = {v: k for k, v in _SIMPLE.items()}
_TS = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=([^\]]+))?\]$")

# Feature dtypes of the contract (section 3) -> Arrow and DuckDB.
DTYPE_ARROW: dict[str, pa.DataType] = {
    "bool": pa.bool_(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
    "float64": pa.float64(), "string": pa.string(), "date": pa.date32(), "timestamp": UTC_TS,
}
DTYPE_DUCKDB: dict[str, str] = {
    "bool": "BOOLEAN", "int32": "INTEGER", "int64": "BIGINT", "float32": "FLOAT",
    "float64": "DOUBLE", "string": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMPTZ",
}


def normalize(t: pa.DataType) -> pa.DataType:
    """The type a value keeps in outputs: timestamps become UTC microseconds, dictionaries decode."""
    if pa.types.is_timestamp(t):
        return UTC_TS
    if pa.types.is_dictionary(t):
        return normalize(t.value_type)
    if pa.types.is_large_string(t):
        return pa.string()
    return t


def to_str(t: pa.DataType) -> str:
    if t in _NAMES:
        return _NAMES[t]
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}, tz={t.tz}]" if t.tz else f"timestamp[{t.unit}]"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{to_str(t.value_type)}>"
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{to_str(t.value_type)}>[{t.list_size}]"
    if pa.types.is_dictionary(t):
        return to_str(t.value_type)
    raise ValueError(f"unsupported Arrow type {t}")


def from_str(text: str) -> pa.DataType:
    s = text.strip()
    if s in _SIMPLE:
        return _SIMPLE[s]
    m = _TS.match(s)
    if m:
        return pa.timestamp(m.group(1), tz=m.group(2))
    if s.startswith("list<") and s.endswith(">"):
        return pa.list_(from_str(s[5:-1]))
    m = re.match(r"^fixed_size_list<(.+)>\[(\d+)\]$", s)
    if m:
        return pa.list_(from_str(m.group(1)), int(m.group(2)))
    raise ValueError(f"unknown type {text!r}")


def is_numeric_or_bool(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def sum_type(t: pa.DataType) -> pa.DataType:
    return pa.float64() if (pa.types.is_floating(t) or pa.types.is_decimal(t)) else pa.int64()
