"""What an analyst's statement reads, decided on the engine's own parse tree: the pure half of analyst SQL.

The engine parses the statement (`parseQueryToJSON`, see sinks/analyst.py); this module walks the tree and
refuses anything outside an allow list: one plain SELECT / WITH / SHOW / DESCRIBE / EXPLAIN; tables of the
analyst's database, a named set of `system` and `information_schema` tables; table functions only from a few
pure generators; no SETTINGS clause, FORMAT, INTO OUTFILE; no scalar function that reaches outside the tables
(files, dictionaries, Join tables, network calls, counters kept in Keeper).

Why a tree and not the text: a regular expression over the text cannot tell a quoted function name from a
string, and every quoting, comment or spelling it does not expect is an escape (`"file"('/etc/hostname')`).
The parse tree has the names already unquoted, the clauses in their own fields and the database and table of
every identifier as separate parts, so a decision here is the engine's own reading of the statement.

Why not the text dump of `EXPLAIN AST`: names are printed raw, so a backquoted name holding a newline forges
tree lines, and `a.b.c` cannot be split into database and table; sending the statement after `EXPLAIN AST `
also runs whatever follows a `;` in the embedded engine (it accepts several statements in one call).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TABLE_FUNCTIONS = frozenset({"numbers", "zeros", "generate_series", "generateseries", "values"})
SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "databases",
        "tables",
        "columns",
        "parts",
        "data_skipping_indices",
        "settings",
        "merge_tree_settings",
        "functions",
        "table_functions",
        "aggregate_function_combinators",
        "data_type_families",
        "formats",
        "table_engines",
        "time_zones",
        "collations",
        "metrics",
        "events",
        "asynchronous_metrics",
    }
)
INFORMATION_SCHEMA = frozenset({"information_schema", "INFORMATION_SCHEMA"})
INFORMATION_SCHEMA_TABLES = frozenset({"tables", "columns", "schemata", "views"})

# Scalar functions that read or write outside the statement's tables, by lower-case name or name prefix.
_AI = "calls a model over the network"
DENIED_FUNCTIONS = {
    "file": "reads a file",
    "hascolumnintable": "reads the metadata of any table",
    "generateserialid": "writes a counter to Keeper",
    "catboostevaluate": "loads a model file",
    "modelevaluate": "loads a model file",
    "getclienthttpheader": "reads the request headers",
    "showcertificate": "reads the server certificate",
    **{
        f"ai{n}": _AI
        for n in ("classify", "embed", "extract", "filter", "generate", "redact", "similarity", "translate")
    },
}
DENIED_PREFIXES = {
    "dictget": "reads a dictionary",
    "dicthas": "reads a dictionary",
    "dictisin": "reads a dictionary",
    "joinget": "reads a Join table",
    "__": "is internal to the engine",
}
IN_FUNCTIONS = frozenset(
    {"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin", "globalnotnullin"}
)
EXPLAIN_KINDS = frozenset(
    {"EXPLAIN", "EXPLAIN AST", "EXPLAIN SYNTAX", "EXPLAIN QUERY TREE", "EXPLAIN PIPELINE", "EXPLAIN ESTIMATE"}
)
EXPLAIN_OPTIONS = frozenset(
    {"header", "description", "actions", "indexes", "projections", "sorting", "json", "distributed", "compact"}
    | {"graph", "optimize", "keep_logical_steps", "oneline", "run_passes", "dump_passes", "passes", "dump_tree"}
)
_OUTPUT_FLAGS = ("is_outfile_append", "is_outfile_truncate", "is_into_outfile_with_stdout")
SHOW_TABLES_KEYS = frozenset(
    {"type", "databases", "settings", "changed", "full", "from", "like", "not_like", "case_insensitive_like"}
    | {"limit_length", *_OUTPUT_FLAGS}
)
SHOW_COLUMNS_KEYS = frozenset(
    {"type", "database", "table", "full", "extended", "like", "not_like", "case_insensitive_like", "limit_length"}
    | set(_OUTPUT_FLAGS)
)
# Parse-tree node types that are statements or clauses of their own; any other `...Query` node is refused.
_NESTED_QUERY_TYPES = frozenset({"SelectWithUnionQuery", "SelectQuery", "SelectIntersectExceptQuery"})
_TABLES_QUERY = "TablesInSelectQuery"
DESCRIBE_PREFIX = "DESCRIBE TABLE "
ALLOWED_STATEMENTS = "SELECT, WITH, SHOW TABLES/DATABASES/COLUMNS, DESCRIBE, EXPLAIN"


class SqlRefused(ValueError):
    """The statement is not a plain read of the allowed tables; the message names what was refused."""


@dataclass(frozen=True)
class Policy:
    """Where an analyst may read. ``database`` is also the session's current database, so a bare name (a table
    of that database, or a CTE) never reaches another one."""

    database: str
    denied_functions: frozenset[str] = field(default_factory=frozenset)  # lower-case, e.g. a server's own UDFs


def describe_as_select(canonical: str) -> str | None:
    """`DESCRIBE TABLE x` (the engine's canonical spelling) as `SELECT * FROM x`, whose tree holds the same
    table expression and any trailing clause; None for another statement. The engine's JSON tree has no
    DESCRIBE node, and DESCRIBE of a table function reads it (schema inference), so the target is checked as a
    SELECT of it."""
    if canonical.startswith(DESCRIBE_PREFIX):
        return "SELECT * FROM " + canonical[len(DESCRIBE_PREFIX) :]
    return None


def check(tree: Mapping[str, Any], policy: Policy) -> None:
    """Raise SqlRefused unless ``tree`` (the engine's `parseQueryToJSON` of one statement) only reads what
    ``policy`` allows."""
    kind = tree.get("type")
    if kind == "SelectWithUnionQuery":
        _walk(tree, policy)
    elif kind == "ExplainQuery":
        _check_explain(tree, policy)
    elif kind == "ShowTablesQuery":
        _only_keys(tree, SHOW_TABLES_KEYS, "SHOW")
        if isinstance(tree.get("from"), Mapping):
            _check_database(str(tree["from"].get("name", "")), policy)
        _walk(list(tree.values()), policy)
    elif kind == "ShowColumnsQuery":
        _only_keys(tree, SHOW_COLUMNS_KEYS, "SHOW COLUMNS")
        parts = [tree["database"], tree["table"]] if tree.get("database") else [tree.get("table", "")]
        _check_table([str(p) for p in parts], policy)
        _walk(list(tree.values()), policy)
    else:
        raise SqlRefused(f"{_statement_name(kind)} statement (only {ALLOWED_STATEMENTS})")


def _check_explain(tree: Mapping[str, Any], policy: Policy) -> None:
    kind = str(tree.get("kind", ""))
    if kind not in EXPLAIN_KINDS:
        raise SqlRefused(f"{kind or 'this EXPLAIN'} (allowed: {', '.join(sorted(EXPLAIN_KINDS))})")
    _only_keys(tree, {"type", "kind", "settings", "query", *_OUTPUT_FLAGS}, kind)
    options = tree.get("settings")
    if isinstance(options, Mapping):
        for change in options.get("changes", []):
            if change.get("name") not in EXPLAIN_OPTIONS:
                raise SqlRefused(f"EXPLAIN option {change.get('name')!r}")
    inner = tree.get("query")
    if not isinstance(inner, Mapping) or inner.get("type") != "SelectWithUnionQuery":
        what = inner.get("type") if isinstance(inner, Mapping) else None
        raise SqlRefused(f"EXPLAIN of a {_statement_name(what)} statement (only of SELECT)")
    _walk(inner, policy)


def _only_keys(node: Mapping[str, Any], allowed: set[str] | frozenset[str], what: str) -> None:
    """Clauses outside the allow list of a statement (SETTINGS, FORMAT, INTO OUTFILE, or a SHOW variant that
    reads other system tables) are refused by the key that holds them."""
    for key, value in node.items():
        if key in allowed and not (key in _OUTPUT_FLAGS and value):
            continue
        if key in ("settings", "settings_ast") and isinstance(value, Mapping):
            raise SqlRefused("SETTINGS clause (limits are fixed for analyst queries)")
        if key in ("format_ast", "format") or key in _OUTPUT_FLAGS or key in ("out_file", "compression"):
            _refuse_output_clause(key)
        raise SqlRefused(f"{what} {key.upper().replace('_', ' ')}")


def _refuse_output_clause(key: str) -> None:
    if key in ("format_ast", "format"):
        raise SqlRefused("FORMAT clause (the answer's format is fixed)")
    raise SqlRefused("INTO OUTFILE (the answer comes back to the caller only)")


def _walk(node: Any, policy: Policy) -> None:
    for item in _nodes(node):
        kind = item.get("type")
        if kind == "SetQuery":
            raise SqlRefused("SETTINGS clause (limits are fixed for analyst queries)")
        for key in ("format_ast", "out_file", "compression", *_OUTPUT_FLAGS):
            if item.get(key):
                _refuse_output_clause(key)
        if isinstance(kind, str) and kind.endswith("Query") and kind not in _NESTED_QUERY_TYPES | {_TABLES_QUERY}:
            raise SqlRefused(f"{_statement_name(kind)} inside the statement")
        if kind == "TableIdentifier":
            _check_table(_parts(item), policy)
        elif kind == "TableExpression" and isinstance(item.get("table_function"), Mapping):
            _check_table_function(item["table_function"])
        elif kind == "Function":
            _check_function(item, policy)


def _nodes(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every object of the tree, depth first; keys are not trusted to be the ones this module knows."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Mapping):
            yield current
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


def _parts(identifier: Mapping[str, Any]) -> list[str]:
    parts = identifier.get("name_parts")
    if isinstance(parts, list) and parts:
        return [str(p) for p in parts]
    return [str(identifier.get("name", ""))]


def _check_table(parts: Sequence[str], policy: Policy) -> None:
    if len(parts) == 1:
        if "." in parts[0]:
            raise SqlRefused(f"quoted name `{parts[0]}` with a dot (write database.table)")
        return  # the session's current database is policy.database: a table there, or a CTE
    if len(parts) != 2:
        raise SqlRefused(f"name {'.'.join(parts)} (database.table at most)")
    database, table = parts
    if database == policy.database:
        return
    if database == "system":
        if table in SYSTEM_TABLES:
            return
        raise SqlRefused(f"table system.{table} (readable system tables: {', '.join(sorted(SYSTEM_TABLES))})")
    if database in INFORMATION_SCHEMA:
        if table.lower() in INFORMATION_SCHEMA_TABLES:
            return
        raise SqlRefused(f"table {database}.{table}")
    _check_database(database, policy)


def _check_database(database: str, policy: Policy) -> None:
    if database not in {policy.database, "system", *INFORMATION_SCHEMA}:
        raise SqlRefused(f"database {database!r} (analysts read {policy.database}, system, information_schema)")


def _check_table_function(function: Mapping[str, Any]) -> None:
    name = str(function.get("name", ""))
    if name.lower() not in TABLE_FUNCTIONS:
        raise SqlRefused(f"table function {name}() (allowed: {', '.join(sorted(TABLE_FUNCTIONS))})")


def _check_function(function: Mapping[str, Any], policy: Policy) -> None:
    name = str(function.get("name", ""))
    lower = name.lower()
    why = DENIED_FUNCTIONS.get(lower) or next((w for p, w in DENIED_PREFIXES.items() if lower.startswith(p)), None)
    if why is None and lower in policy.denied_functions:
        why = "is defined on the server, outside the allow list"
    if why is not None:
        raise SqlRefused(f"function {name}() {why}")
    if lower in IN_FUNCTIONS:
        arguments = function.get("arguments")
        children = arguments.get("children", []) if isinstance(arguments, Mapping) else []
        if len(children) == 2 and isinstance(children[1], Mapping) and children[1].get("type") == "Identifier":
            _check_table(_parts(children[1]), policy)  # `x IN db.table` reads that table


def _statement_name(kind: Any) -> str:
    """`ShowIndexesQuery` -> `SHOW INDEXES`."""
    words = re.findall(r"[A-Z][a-z]*|[a-z]+", str(kind or "").removesuffix("Query"))
    return " ".join(words).upper() or "unknown"
