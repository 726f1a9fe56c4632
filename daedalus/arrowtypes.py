"""Arrow types as short, stable strings (the compiled plan is YAML a person edits).

A source column's *physical* type is whatever its writer chose (pandas categoricals are
dictionaries, pandas and polars strings are large_string, pyarrow may write string_view,
timestamps come in four units and any zone). Daedalus computes with, and writes, its
*logical* type (`logical`): one type per kind of value, so that the same table written by
pyarrow, pandas, polars or DuckDB gives the same output.
"""

from __future__ import annotations

import re

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")

_SIMPLE: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "halffloat": pa.float16(),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
    "date32": pa.date32(),
}
_NAMES = {v: k for k, v in _SIMPLE.items()}
_TS = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=([^\]]+))?\]$")
_DECIMAL = re.compile(r"^decimal(128|256)\((\d+), *(\d+)\)$")

# Feature dtypes of the contract (section 3) -> Arrow and DuckDB.
DTYPE_ARROW: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": UTC_TS,
}
DTYPE_DUCKDB: dict[str, str] = {
    "bool": "BOOLEAN",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}


def is_string_like(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def logical(t: pa.DataType) -> pa.DataType:
    """The type a source value has in Daedalus: the physical variants of one kind made one.

    Dictionaries decode to their values; large and view strings (and binaries) become the
    plain ones; every timestamp becomes UTC microseconds (contract section 1); date64
    becomes date32; list variants become lists of the logical element type.
    """
    if pa.types.is_dictionary(t):
        return logical(t.value_type)
    if is_string_like(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_timestamp(t):
        return UTC_TS
    if pa.types.is_date(t):
        return pa.date32()
    if pa.types.is_fixed_size_list(t):
        return pa.list_(logical(t.value_type), t.list_size)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.list_(logical(t.value_type))
    return t


# The name `normalize` is what the rest of the code base has always called this.
normalize = logical


def kind(t: pa.DataType) -> str:
    """A type up to what reading files together reconciles (integer widths, decimal scales,
    timestamp units and zones, string encodings): files of one source may differ only within
    a kind."""
    t = logical(t)
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "floating"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        return f"list<{kind(t.value_type)}>"
    return to_str(t) if supported(t) else str(t)


def unify(types: list[pa.DataType]) -> pa.DataType:
    """The logical type that holds the values of every type in `types` (all of one kind)."""
    ts = [logical(t) for t in types]
    first = ts[0]
    if all(t == first for t in ts):
        return first
    if all(pa.types.is_integer(t) for t in ts):
        signed = [t for t in ts if pa.types.is_signed_integer(t)]
        unsigned = [t for t in ts if pa.types.is_unsigned_integer(t)]
        s_bits = max((t.bit_width for t in signed), default=0)
        u_bits = max((t.bit_width for t in unsigned), default=0)
        if not signed:
            return {8: pa.uint8(), 16: pa.uint16(), 32: pa.uint32()}.get(u_bits, pa.uint64())
        bits = max(s_bits, min(64, 2 * u_bits) if u_bits else 0)
        return {8: pa.int8(), 16: pa.int16(), 32: pa.int32()}.get(bits, pa.int64())
    if all(pa.types.is_floating(t) for t in ts):
        return max(ts, key=lambda t: t.bit_width)
    if all(pa.types.is_decimal(t) for t in ts):
        scale = max(t.scale for t in ts)
        digits = max(t.precision - t.scale for t in ts)
        precision = digits + scale
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(min(precision, 76), scale)
    return first


def supported(t: pa.DataType) -> bool:
    try:
        to_str(t)
        return True
    except ValueError:
        return False


def to_str(t: pa.DataType) -> str:
    if t in _NAMES:
        return _NAMES[t]
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}, tz={t.tz}]" if t.tz else f"timestamp[{t.unit}]"
    if pa.types.is_decimal128(t) or pa.types.is_decimal256(t):
        return f"decimal{t.bit_width}({t.precision}, {t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{to_str(t.value_type)}>"
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{to_str(t.value_type)}>[{t.list_size}]"
    if pa.types.is_dictionary(t):
        return to_str(t.value_type)
    if pa.types.is_map(t):
        return f"map<{to_str(t.key_type)}, {to_str(t.item_type)}>"
    raise ValueError(f"unsupported Arrow type {t}")


def from_str(text: str) -> pa.DataType:
    s = str(text).strip()
    if s in _SIMPLE:
        return _SIMPLE[s]
    m = _TS.match(s)
    if m:
        return pa.timestamp(m.group(1), tz=m.group(2))
    m = _DECIMAL.match(s)
    if m:
        build = pa.decimal128 if m.group(1) == "128" else pa.decimal256
        try:
            return build(int(m.group(2)), int(m.group(3)))
        except ValueError as e:
            raise ValueError(f"unknown type {text!r}: {e}") from None
    if s.startswith("list<") and s.endswith(">"):
        return pa.list_(from_str(s[5:-1]))
    m = re.match(r"^map<([a-z0-9_]+), *(.+)>$", s)
    if m:
        return pa.map_(from_str(m.group(1)), from_str(m.group(2)))
    m = re.match(r"^fixed_size_list<(.+)>\[(\d+)\]$", s)
    if m:
        return pa.list_(from_str(m.group(1)), int(m.group(2)))
    raise ValueError(f"unknown type {text!r}")


TYPE_FORMS = (
    "bool, int8..int64, uint8..uint64, float32, float64, string, binary, date32, "
    "timestamp[us, tz=UTC], decimal128(P, S), list<T>, fixed_size_list<T>[N], map<K, V>"
)


def is_numeric_or_bool(t: pa.DataType | None) -> bool:
    return t is not None and (
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)
    )


def sum_type(t: pa.DataType) -> pa.DataType:
    return pa.float64() if (pa.types.is_floating(t) or pa.types.is_decimal(t)) else pa.int64()


# Which source column types a view feature of each dtype reads (a CAST that is exact, or for
# floats the nearest value): anything else is a compile error, not a failure in a day job.
_READS: dict[str, tuple[str, ...]] = {
    "bool": ("bool",),
    "int32": ("integer", "decimal0"),
    "int64": ("integer", "decimal0"),
    "float32": ("integer", "floating", "decimal"),
    "float64": ("integer", "floating", "decimal"),
    "string": ("string", "integer"),
    "date": ("date", "timestamp"),
    "timestamp": ("timestamp", "date"),
}
_READ_NAMES = {
    "bool": "bool",
    "integer": "integer",
    "decimal0": "decimal with scale 0",
    "floating": "float",
    "decimal": "decimal",
    "string": "string",
    "date": "date",
    "timestamp": "timestamp",
}


def _read_class(t: pa.DataType) -> set[str]:
    t = logical(t)
    if pa.types.is_boolean(t):
        return {"bool"}
    if pa.types.is_integer(t):
        return {"integer"}
    if pa.types.is_floating(t):
        return {"floating"}
    if pa.types.is_decimal(t):
        return {"decimal", "decimal0"} if t.scale == 0 else {"decimal"}
    if pa.types.is_string(t):
        return {"string"}
    if pa.types.is_date(t):
        return {"date"}
    if pa.types.is_timestamp(t):
        return {"timestamp"}
    return set()


def readable_as(t: pa.DataType, dtype: str) -> str | None:
    """None when a column of type `t` can be declared `dtype`; else what `dtype` takes."""
    if _read_class(t) & set(_READS[dtype]):
        return None
    return ", ".join(_READ_NAMES[c] for c in _READS[dtype])
