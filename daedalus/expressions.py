"""Checking a feature's `expr`: one scalar SQL expression over the view's source columns.

DuckDB's own parser gives the syntax tree (json_serialize_sql), so what is accepted is
exactly what DuckDB will run. The tree is walked against an allow-list: a few node kinds
(constants, columns, operators, CASE, CAST, lambdas) and the deterministic scalar functions
DuckDB ships, minus those that read session state or the environment. Everything else
(statements, sub-queries, table, aggregate and window functions, parameters, `*`) is refused
by not being on the list, never by matching strings. The skeleton stage also runs DuckDB
with external access disabled (skeleton/context.py), so an expression that got through
could still not reach a file.
"""

from __future__ import annotations

import json
import threading
from functools import cache, lru_cache
from typing import Any

import duckdb

# Node classes a scalar expression is made of; anything else is refused.
_SCALAR_CLASSES = {
    "CONSTANT",
    "COLUMN_REF",
    "FUNCTION",
    "OPERATOR",
    "COMPARISON",
    "CONJUNCTION",
    "CASE",
    "CAST",
    "BETWEEN",
    "COLLATE",
    "LAMBDA",
    "TYPE",
}
_REFUSED_CLASSES = {
    "SUBQUERY": "sub-queries are not allowed",
    "WINDOW": "window functions are not allowed",
    "STAR": "'*' and COLUMNS() are not allowed",
    "PARAMETER": "parameters ($1, ?) are not allowed",
    "POSITIONAL_REFERENCE": "positional references (#1) are not allowed",
    "DEFAULT": "DEFAULT is not allowed",
}
# Deterministic-looking scalar functions that read the session, the catalog or the
# environment rather than the row (their values change with the machine or the run).
_SESSION_FUNCTIONS = {
    "current_setting",
    "current_database",
    "current_catalog",
    "current_schema",
    "current_schemas",
    "current_query",
    "current_role",
    "current_user",
    "user",
    "session_user",
    "current_date",
    "current_localtime",
    "current_localtimestamp",
    "get_current_time",
    "get_current_timestamp",
    "now",
    "today",
    "transaction_timestamp",
    "txid_current",
    "getvariable",
    "in_search_path",
    "getenv",
    "version",
    "get_block_size",
    "pg_conf_load_time",
    "pg_postmaster_start_time",
    "pg_sleep",
    "pg_my_temp_schema",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "ago",
}
_SESSION_PREFIXES = ("current_", "has_", "pg_", "duckdb_")
# Keywords that begin a statement: only used to name what was refused when parsing fails.
_STATEMENT_KEYWORDS = {
    "select",
    "with",
    "from",
    "copy",
    "attach",
    "detach",
    "install",
    "load",
    "pragma",
    "set",
    "reset",
    "call",
    "create",
    "drop",
    "insert",
    "update",
    "delete",
    "alter",
    "export",
    "import",
    "vacuum",
    "checkpoint",
    "use",
    "execute",
    "prepare",
    "begin",
    "commit",
    "rollback",
    "truncate",
    "merge",
    "summarize",
    "describe",
    "show",
    "explain",
    "unpivot",
    "pivot",
}


class ExprError(ValueError):
    pass


@lru_cache(maxsize=1)
def _types() -> frozenset[str]:
    con = duckdb.connect()
    names = {r[0].lower() for r in con.execute("SELECT type_name FROM duckdb_types()").fetchall()}
    return frozenset(names | {"list", "struct", "map", "union", "array", "decimal", "numeric", "enum"})


_local = threading.local()


def _con() -> duckdb.DuckDBPyConnection:
    """This thread's parser connection: opening one costs more than parsing an expression."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect(config={"enable_external_access": False, "autoload_known_extensions": False})
    return con


@lru_cache(maxsize=1)
def _catalog() -> tuple[frozenset[str], dict[str, str], dict[str, str]]:
    """(allowed scalar function names, why each other known function is refused, the
    built-in macros' bodies). A macro's verdict is decided when an expression calls it."""
    con = duckdb.connect()
    rows = con.execute(
        "SELECT function_name, function_type, stability, macro_definition FROM duckdb_functions()"
    ).fetchall()
    refused = {name: "it reads the session or the environment, not the row" for name in _SESSION_FUNCTIONS}
    scalar: set[str] = set()
    macros: dict[str, str] = {}
    for name, ftype, stability, macro in rows:
        name = name.lower()
        if ftype == "scalar" and stability != "VOLATILE":
            scalar.add(name)
        elif ftype == "scalar":
            refused.setdefault(name, "not deterministic")
        elif ftype == "macro":
            macros[name] = macro or ""
        elif ftype in ("table", "table_macro"):
            refused[name] = "a table function: it reads files or tables"
        elif ftype == "pragma":
            refused.setdefault(name, "a pragma")
        else:
            refused.setdefault(name, f"an {ftype} function" if ftype[0] in "aeiou" else f"a {ftype} function")
    for name in list(scalar) + list(macros):
        if name in _SESSION_FUNCTIONS or name.startswith(_SESSION_PREFIXES):
            scalar.discard(name)
            macros.pop(name, None)
            refused[name] = "it reads the session or the environment, not the row"
    for name in refused:
        scalar.discard(name)
        macros.pop(name, None)
    return frozenset(scalar), refused, macros


def _refusal(fn: str) -> str | None:
    """None if `fn` may be called, else why not."""
    return _function_verdict(fn, frozenset())


@cache
def _function_verdict(fn: str, calling: frozenset[str]) -> str | None:
    scalar, refused, macros = _catalog()
    if fn in scalar:
        return None
    if fn not in macros:
        return refused.get(fn, "not a known scalar function")
    # A built-in macro is allowed when its own body passes the same check (no sub-query,
    # aggregate or refused function); a macro that calls itself through others is refused.
    if fn in calling:
        return "a macro over functions that are not allowed"
    try:
        calls: list[str] = []
        _walk(_parse(macros[fn]), frozenset(), [], calls)
    except ExprError:
        return "a macro over aggregates or sub-queries"
    for c in calls:
        if _function_verdict(c, calling | {fn}) is not None:
            return "a macro over functions that are not allowed"
    return None


def _parse(expr: str) -> Any:
    """The select-list node of `SELECT (<expr>) FROM __source`, after structural checks."""
    sql = f"SELECT ({expr}) AS __value FROM __source"
    tree = json.loads(_con().execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    if tree.get("error"):
        raise ExprError(_parse_failure(expr, tree.get("error_message", "syntax error")))
    stmts = tree.get("statements", [])
    if len(stmts) != 1:
        raise ExprError("must be one expression, without ';' or statements")
    node = stmts[0]["node"]
    if node.get("type") != "SELECT_NODE" or len(node.get("select_list", [])) != 1:
        raise ExprError("must be one scalar expression")
    ft = node.get("from_table") or {}
    if (
        ft.get("type") != "BASE_TABLE"
        or ft.get("table_name") != "__source"
        or ft.get("schema_name")
        or ft.get("catalog_name")
    ):
        raise ExprError("must be one scalar expression (no FROM, joins or table functions)")
    for key in ("where_clause", "having", "qualify", "sample"):
        if node.get(key):
            raise ExprError("must be one scalar expression (no WHERE, HAVING, QUALIFY or SAMPLE)")
    if node.get("group_expressions") or node.get("modifiers") or node.get("cte_map", {}).get("map"):
        raise ExprError("must be one scalar expression (no GROUP BY, ORDER BY, LIMIT or WITH)")
    return node["select_list"][0]


def _parse_failure(expr: str, message: str) -> str:
    words = []
    try:
        for pos, kind in duckdb.tokenize(expr):
            if kind == duckdb.token_type.keyword:
                end = pos
                while end < len(expr) and (expr[end].isalnum() or expr[end] == "_"):
                    end += 1
                words.append(expr[pos:end].lower())
    except Exception:  # the tokenizer only helps to name the problem
        pass
    stmt = next((w for w in words if w in _STATEMENT_KEYWORDS), None)
    if ";" in expr:
        return "must be one expression, without ';' or statements"
    if stmt:
        return f"must be one scalar expression: {stmt.upper()} is not allowed"
    return f"not a valid SQL expression: {' '.join(message.split())}"


def _lambda_params(lhs: Any) -> set[str]:
    if isinstance(lhs, dict) and lhs.get("class") == "COLUMN_REF":
        return {lhs["column_names"][-1]}
    if isinstance(lhs, dict) and lhs.get("class") == "FUNCTION" and lhs.get("function_name") == "row":
        out: set[str] = set()
        for a in lhs.get("arguments", []):
            out |= _lambda_params(a.get("expression") if isinstance(a, dict) and "expression" in a else a)
        return out
    raise ExprError("lambda parameters must be plain names")


def _walk(node: Any, bound: frozenset[str], cols: list[str], calls: list[str]) -> None:
    """Check every node under `node`; collect column names read and functions called."""
    if isinstance(node, list):
        for v in node:
            _walk(v, bound, cols, calls)
        return
    if not isinstance(node, dict):
        return
    cls = node.get("class")
    if cls is None:  # a container (argument lists, CASE checks, ...)
        for v in node.values():
            _walk(v, bound, cols, calls)
        return
    if cls in _REFUSED_CLASSES:
        raise ExprError(_REFUSED_CLASSES[cls])
    if cls not in _SCALAR_CLASSES:
        raise ExprError(f"{cls.lower().replace('_', ' ')} expressions are not allowed")
    if cls == "LAMBDA":
        _walk(node.get("expr"), bound | _lambda_params(node.get("lhs")), cols, calls)
        return
    if cls == "TYPE":
        name = str(node.get("type_name", "")).lower()
        if node.get("schema") or node.get("catalog") or name not in _types():
            if name in _STATEMENT_KEYWORDS:
                raise ExprError(f"must be one scalar expression: {name.upper()} is not allowed")
            raise ExprError(f"unknown type {name!r}")
    if cls == "COLUMN_REF":
        names = node["column_names"]
        name = names[1] if len(names) > 1 and names[0] == "__source" else names[0]
        if name not in bound and name not in cols:
            cols.append(name)
        return
    if cls == "FUNCTION":
        fn = str(node.get("function_name", "")).lower()
        if node.get("schema") or node.get("catalog"):
            raise ExprError(f"function {fn}(): qualified function names are not allowed")
        if (
            node.get("distinct")
            or node.get("filter")
            or node.get("order_bys", {}).get("orders")
            or node.get("export_state")
        ):
            raise ExprError(f"function {fn}(): DISTINCT, FILTER, ORDER BY and EXPORT_STATE are not allowed")
        calls.append(fn)
    for key, v in node.items():
        if key not in ("class", "type"):
            _walk(v, bound, cols, calls)


def referenced_columns(expr: str) -> list[str]:
    """Check `expr` and return the column names it reads, in first-use order."""
    node = _parse(expr)
    cols: list[str] = []
    calls: list[str] = []
    _walk(node, frozenset(), cols, calls)
    for fn in calls:
        why = _refusal(fn)
        if why is not None:
            raise ExprError(f"function {fn}() is not allowed ({why})")
    return cols
