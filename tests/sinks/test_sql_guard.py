"""The decision of sinks/sql_guard.py on trees written by hand: the shapes the engine gives, without the engine.

The corpus of real statements parsed by the real engine is in test_analyst_sql.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from sinks.sql_guard import Policy, SqlRefused, check, describe_as_select

POLICY = Policy("cdp")


def table(*parts: str) -> dict[str, Any]:
    return {"type": "TableIdentifier", "name": ".".join(parts), "name_parts": list(parts)}


def select(*tables: dict[str, Any], **extra: Any) -> dict[str, Any]:
    elements = [
        {"type": "TablesInSelectQueryElement", "table_expression": {"type": "TableExpression", **t}} for t in tables
    ]
    query = {"type": "SelectQuery", "select": {"type": "ExpressionList", "children": [{"type": "Asterisk"}]}, **extra}
    if elements:
        query["tables"] = {"type": "TablesInSelectQuery", "children": elements}
    return {"type": "SelectWithUnionQuery", "list_of_selects": {"type": "ExpressionList", "children": [query]}}


def function(name: str, *args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Function", "name": name, "arguments": {"type": "ExpressionList", "children": list(args)}}


def test_tables_of_the_database_and_listed_system_tables_pass() -> None:
    check(select({"database_and_table_name": table("cdp", "events")}), POLICY)
    check(select({"database_and_table_name": table("events")}), POLICY)  # the session's current database
    check(select({"database_and_table_name": table("system", "tables")}), POLICY)
    check(select({"database_and_table_name": table("INFORMATION_SCHEMA", "TABLES")}), POLICY)
    check(select({"table_function": function("numbers", {"type": "Literal"})}), POLICY)


@pytest.mark.parametrize(
    "tree,named",
    [
        (select({"database_and_table_name": table("system", "users")}), "system.users"),
        (select({"database_and_table_name": table("default", "secrets")}), "'default'"),
        (select({"database_and_table_name": table("Cdp", "events")}), "'Cdp'"),  # database names are exact
        (select({"database_and_table_name": table("cdp.x", "y")}), "'cdp.x'"),
        (select({"database_and_table_name": {"type": "TableIdentifier", "name": "system.users"}}), "with a dot"),
        (select({"database_and_table_name": table("a", "b", "c")}), "a.b.c"),
        (select({"table_function": function("url")}), "url()"),
        (select({"table_function": function("numbers_mt")}), "numbers_mt()"),
        (select(settings={"type": "SetQuery", "changes": []}), "SETTINGS"),
        ({**select(), "format_ast": {"type": "Identifier", "name": "JSON"}}, "FORMAT"),
        ({**select(), "out_file": {"type": "Literal"}}, "INTO OUTFILE"),
        ({**select(), "is_into_outfile_with_stdout": True}, "INTO OUTFILE"),
        ({"type": "InsertQuery"}, "INSERT statement"),
        ({"type": "ShowIndexesQuery"}, "SHOW INDEXES statement"),
        ({"type": "ShowTablesQuery", "clusters": True}, "SHOW CLUSTERS"),
        ({"type": "ShowTablesQuery", "from": {"type": "Identifier", "name": "default"}}, "'default'"),
        ({"type": "ShowColumnsQuery", "database": "system", "table": "users"}, "system.users"),
        ({"type": "ExplainQuery", "kind": "EXPLAIN TABLE OVERRIDE"}, "EXPLAIN TABLE OVERRIDE"),
        ({"type": "ExplainQuery", "kind": "EXPLAIN", "query": {"type": "InsertQuery"}}, "INSERT"),
        (
            {
                "type": "ExplainQuery",
                "kind": "EXPLAIN",
                "settings": {"type": "SetQuery", "changes": [{"name": "max_threads"}]},
                "query": select(),
            },
            "'max_threads'",
        ),
    ],
)
def test_refusals_name_what_was_refused(tree: dict[str, Any], named: str) -> None:
    with pytest.raises(SqlRefused, match=re.escape(named)):
        check(tree, POLICY)


def test_a_table_named_after_in_is_read_and_checked() -> None:
    where = function(
        "globalNotIn", {"type": "Identifier", "name": "a"}, table("system", "users") | {"type": "Identifier"}
    )
    with pytest.raises(SqlRefused, match=r"system\.users"):
        check(select(where=where), POLICY)
    ok = function("in", {"type": "Identifier", "name": "a"}, table("cdp", "t") | {"type": "Identifier"})
    check(select(where=ok), POLICY)


@pytest.mark.parametrize("name", ["file", "FILE", "dictGetString", "joinGetOrNull", "aiGenerate", "__getScalar"])
def test_scalar_functions_that_reach_outside_are_refused(name: str) -> None:
    with pytest.raises(SqlRefused, match=f"function {name}"):
        check(select(where=function(name)), POLICY)


def test_a_servers_own_functions_are_refused() -> None:
    check(select(where=function("myUdf")), POLICY)
    with pytest.raises(SqlRefused, match="defined on the server"):
        check(select(where=function("myUdf")), Policy("cdp", frozenset({"myudf"})))


def test_rules_hold_at_any_depth_and_under_unknown_keys() -> None:
    deep = select({"database_and_table_name": table("system", "grants")})
    tree = select(where=function("has", {"type": "Subquery", "children": [deep]}), some_new_clause=[deep])
    with pytest.raises(SqlRefused, match=r"system\.grants"):
        check(tree, POLICY)


def test_explain_options_and_show_variants_that_read_allowed_tables() -> None:
    options = {"type": "SetQuery", "changes": [{"name": "indexes"}, {"name": "header"}]}
    check({"type": "ExplainQuery", "kind": "EXPLAIN", "settings": options, "query": select()}, POLICY)
    check({"type": "ShowTablesQuery", "databases": True, "like": "c%"}, POLICY)
    check({"type": "ShowTablesQuery", "settings": True, "changed": True}, POLICY)
    check({"type": "ShowTablesQuery", "from": {"type": "Identifier", "name": "system"}}, POLICY)
    check({"type": "ShowColumnsQuery", "table": "events"}, POLICY)


def test_describe_is_checked_as_a_select_of_its_target() -> None:
    assert describe_as_select("DESCRIBE TABLE file('x') SETTINGS a = 1") == "SELECT * FROM file('x') SETTINGS a = 1"
    assert describe_as_select("SELECT 'DESCRIBE TABLE x'") is None
