"""The Debezium connector configuration of a database source (pure) and Connect's status, read."""

from __future__ import annotations

import pytest

from streams.connect import Dsn, check_table, connector_config, connector_state, slot_name


def test_dsn_parsing_and_redaction() -> None:
    dsn = Dsn.parse("postgresql://cdp%40crm:s3cr%2Ft@db.internal:6432/crm?sslmode=require")
    assert (dsn.user, dsn.password, dsn.host, dsn.port, dsn.dbname, dsn.sslmode) == (
        "cdp@crm",
        "s3cr/t",
        "db.internal",
        6432,
        "crm",
        "require",
    )
    assert "s3cr" not in dsn.redacted
    assert Dsn.parse("postgres://u@h/d").port == 5432


@pytest.mark.parametrize("text", ["mysql://u@h/d", "postgresql://h/d", "postgresql://u@h", "postgresql://u@h/"])
def test_bad_dsns(text: str) -> None:
    with pytest.raises(ValueError, match="dsn"):
        Dsn.parse(text)


def test_connector_config() -> None:
    config = connector_config(
        topic_prefix="cdp",
        cdc_prefix="cdp.cdc.crm",
        source="crm",
        dsn=Dsn.parse("postgresql://u:p@127.0.0.1:5432/app"),
        table="crm.contacts",
        replica_identity_full=True,
        partitions=4,
        replication=3,
    )
    assert config["table.include.list"] == r"crm\.contacts"  # a regular expression: the dot is literal
    assert config["replica.identity.autoset.values"] == "crm.contacts:FULL"
    assert config["topic.prefix"] == "cdp.cdc.crm"
    assert config["slot.name"] == config["publication.name"] == "cdp_crm"
    assert config["topic.creation.default.replication.factor"] == "3"
    # The mapping's value types rely on these.
    assert (config["decimal.handling.mode"], config["time.precision.mode"]) == ("string", "connect")
    assert config["value.converter.schemas.enable"] == "false"


def test_names() -> None:
    assert slot_name("t1a2", "Shop-Orders") == "t1a2_shop_orders"
    assert len(slot_name("p" * 40, "s" * 40)) == 63
    assert check_table("crm.contacts") == "crm.contacts"
    with pytest.raises(ValueError, match=r"SCHEMA\.TABLE"):
        check_table("contacts; drop table x")


def test_connector_state() -> None:
    running = {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}
    assert connector_state(running) == ("running", None)
    failed = {
        "connector": {"state": "RUNNING"},
        "tasks": [{"id": 0, "state": "FAILED", "trace": "org.postgresql.util.PSQLException: FATAL: bad\n at x"}],
    }
    assert connector_state(failed) == ("failed", "org.postgresql.util.PSQLException: FATAL: bad")
    assert connector_state({"connector": {"state": "RUNNING"}, "tasks": []}) == ("starting", None)
    assert connector_state(None)[0] == "missing"
