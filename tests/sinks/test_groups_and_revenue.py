"""Groups as their own entity and revenue per currency, on chDB through the landing table as the sink writes:
a group call's traits are the group's (``groups``), never the person's, the person is linked to the group
(``profile_groups``), an audience can ask for account traits, and revenue is kept per currency."""

from __future__ import annotations

from schemas.audience import validate_rule
from sinks.audience_sql import compile_audience
from sinks.clickhouse import ClickHouse
from tests.sinks.fixtures import ANN, BOB, account_world


def test_group_traits_are_the_groups_and_the_person_is_linked(ch: ClickHouse) -> None:
    account_world(ch)
    db = ch.database
    traits = ch.scalar(f"SELECT traits FROM {db}.profiles WHERE profile_id = {{p:String}}", {"p": ANN})
    assert traits == {"name": "Ann", "plan": "pro"}  # not "Acme Inc": the group call's context.traits are Ann's
    _, rows = ch.query(f"SELECT group_id, traits, members FROM {db}.groups ORDER BY group_id")
    assert rows == [
        ("acme", {"industry": "retail", "name": "Acme Inc"}, 1),
        ("globex", {"industry": "energy", "name": "Globex"}, 1),
    ]
    _, rows = ch.query(f"SELECT profile_id, group_id FROM {db}.profile_groups ORDER BY profile_id")
    assert rows == [(ANN, "acme"), (BOB, "globex")]


def test_an_audience_of_people_at_accounts_in_retail(ch: ClickHouse) -> None:
    account_world(ch)
    rule = validate_rule({"group_trait": "industry", "op": "eq", "value": "retail"}, "profile")
    compiled = compile_audience(rule, "profile", ch.database)
    assert ch.query(compiled.sql, compiled.params)[1] == [(ANN,)]
    rule = validate_rule({"not": {"group_trait": "industry", "op": "eq", "value": "retail"}}, "profile")
    compiled = compile_audience(rule, "profile", ch.database)
    assert ch.query(compiled.sql, compiled.params)[1] == [(BOB,)]


def test_revenue_is_kept_per_currency(ch: ClickHouse) -> None:
    account_world(ch)
    p = {"p": ANN}
    sql = f"SELECT revenue, revenue_by_currency FROM {ch.database}.profiles WHERE profile_id = {{p:String}}"
    assert ch.query(sql, p)[1] == [(135.0, {"": 5.0, "EUR": 100.0, "USD": 30.0})]
