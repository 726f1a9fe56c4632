"""Checking a feature's `expr`: one scalar SQL expression over the view's source columns.

DuckDB's own parser gives the syntax tree (json_serialize_sql), so what is accepted is
exactly what DuckDB will run; anything but a single scalar expression is refused.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import duckdb

# Functions that reach outside the row: files, the environment, the network, the catalog.
_DENIED_PREFIXES = ("read_", "parquet_", "sniff_", "duckdb_", "pragma_", "glob", "getenv", "current_setting",
                    "query", "query_table", "icu_", "json_execute", "system", "shell", "load", "install",
                    "sqlite_", "postgres_", "mysql_", "iceberg_", "delta_", "http", "s3", "attach")


class ExprError(ValueError):
    pass


@lru_cache(maxsize=1)
def _aggregate_and_table_functions() -> frozenset[str]:
    con = duckdb.connect()
    rows = con.execute(
        "SELECT DISTINCT function_name FROM duckdb_functions() "
        "WHERE function_type IN ('aggregate', 'table', 'table_macro', 'pragma')"
    ).fetchall()
    return frozenset(r[0].lower() for r in rows)


def _walk(node: Any, found: list[dict]) -> None:
    if isinstance(node, dict):
        if "class" in node:
            found.append(node)
        for v in node.values():
            _walk(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found)


def referenced_columns(expr: str) -> list[str]:
    """Check `expr` and return the column names it reads, in first-use order."""
    if ";" in expr:
        raise ExprError("must be one expression, without ';'")
    sql = f"SELECT ({expr}) AS __value FROM __source"
    con = duckdb.connect()
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    if tree.get("error"):
        raise ExprError(f"not a valid SQL expression: {tree.get('error_message', 'syntax error')}")
    stmts = tree.get("statements", [])
    if len(stmts) != 1:
        raise ExprError("must be one expression")
    node = stmts[0]["node"]
    if node.get("type") != "SELECT_NODE" or len(node.get("select_list", [])) != 1:
        raise ExprError("must be one scalar expression")
    ft = node.get("from_table") or {}
    if ft.get("type") != "BASE_TABLE" or ft.get("table_name") != "__source":
        raise ExprError("must be one scalar expression (no FROM, joins or clauses)")
    for key in ("where_clause", "having", "qualify", "sample"):
        if node.get(key):
            raise ExprError("must be one scalar expression (no clauses)")
    if node.get("group_expressions") or node.get("modifiers") or node.get("cte_map", {}).get("map"):
        raise ExprError("must be one scalar expression (no clauses)")
    found: list[dict] = []
    _walk(node["select_list"], found)
    denied = _aggregate_and_table_functions()
    cols: list[str] = []
    for n in found:
        cls = n.get("class")
        if cls == "SUBQUERY":
            raise ExprError("sub-queries are not allowed")
        if cls == "WINDOW":
            raise ExprError("window functions are not allowed")
        if cls == "STAR":
            raise ExprError("'*' is not allowed")
        if cls == "FUNCTION":
            fn = str(n.get("function_name", "")).lower()
            if fn in denied:
                raise ExprError(f"function {fn}() is not allowed (aggregate or table function)")
            if fn.startswith(_DENIED_PREFIXES):
                raise ExprError(f"function {fn}() is not allowed (it reads outside the row)")
        if cls == "COLUMN_REF":
            name = n["column_names"][-1]
            if name not in cols:
                cols.append(name)
    return cols
