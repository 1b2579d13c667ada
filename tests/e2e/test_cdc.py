"""Database sources end to end: a real PostgreSQL server (wal_level=logical), real Kafka Connect with the
Debezium connector, `cdp run`. Contacts and orders inserted, updated and deleted in PostgreSQL show as
identities, traits and revenue on the right profiles within seconds; Kafka Connect killed and `cdp run`
stopped in the middle lose and double nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.fixtures import in_list
from tests.support.broker import Connect, Postgres
from tests.support.service import CdpProcess, cdp_cli

pytestmark = pytest.mark.e2e
CONVERGE_S = 10.0  # the bound from a commit in PostgreSQL to the profile


@pytest.fixture(scope="module")
def cdp(kafka, connect: Connect, tmp_path_factory) -> Iterator[CdpProcess]:
    root = tmp_path_factory.mktemp("cdc")
    service = CdpProcess(
        kafka.bootstrap, root / "data", f"t{uuid.uuid4().hex[:10]}", CDP_CONNECT_URL=connect.url
    ).start()
    service.wait_ready()
    yield service
    assert service.stop() == 0, service.output()[-3000:]


class Shop:
    """The test's own schemas in the session's PostgreSQL, and what the profiles must show for them."""

    def __init__(self, pg: Postgres, run: str) -> None:
        self.pg, self.run = pg, run
        self.crm, self.shop = f"crm_{run}", f"shop_{run}"
        self.contact_versions = 0  # every insert, changing update and delete of a contact is one event
        self.orders_ever: set[int] = set()  # one event per order, whatever its versions
        self.contacts_ever: set[int] = set()
        pg.sql(
            f"""
            CREATE SCHEMA {self.crm};
            CREATE TABLE {self.crm}.contacts (
                id bigint PRIMARY KEY, email text, phone text, first_name text, last_name text, plan text,
                internal_notes text, created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamp NOT NULL DEFAULT clock_timestamp());
            CREATE SCHEMA {self.shop};
            CREATE TABLE {self.shop}.orders (
                id bigint PRIMARY KEY, contact_id bigint, customer_email text, total numeric(12, 2),
                currency text, status text, created_at timestamp NOT NULL DEFAULT clock_timestamp());
            """
        )

    def email(self, i: int) -> str:
        return f"c{i}-{self.run}@example.com"

    def add_contacts(self, ids: range) -> None:
        values = ", ".join(f"({i}, '{self.email(i).upper()}', 'First{i}', 'gold', 'secret {i}')" for i in ids)
        self.pg.sql(f"INSERT INTO {self.crm}.contacts (id, email, first_name, plan, internal_notes) VALUES {values}")
        self.contact_versions += len(ids)
        self.contacts_ever.update(ids)

    def add_orders(self, ids: range) -> None:
        # order i belongs to contact i % 10 + 1; linked by crm id and e-mail
        values = ", ".join(f"({i}, {i % 10 + 1}, '{self.email(i % 10 + 1)}', {i}.25, 'EUR', 'paid')" for i in ids)
        self.pg.sql(
            f"INSERT INTO {self.shop}.orders (id, contact_id, customer_email, total, currency, status) VALUES {values}"
        )
        self.orders_ever.update(ids)

    def update_contacts(self, ids: list[int], plan: str) -> None:
        self.pg.sql(
            f"UPDATE {self.crm}.contacts SET plan = '{plan}', updated_at = clock_timestamp() "
            f"WHERE id IN ({', '.join(map(str, ids))})"
        )
        self.contact_versions += len(ids)

    def delete_contacts(self, ids: list[int]) -> None:
        self.pg.sql(f"DELETE FROM {self.crm}.contacts WHERE id IN ({', '.join(map(str, ids))})")
        self.contact_versions += len(ids)

    def update_orders(self, ids: list[int], total: str) -> None:
        self.pg.sql(f"UPDATE {self.shop}.orders SET total = {total} WHERE id IN ({', '.join(map(str, ids))})")

    def delete_orders(self, ids: list[int]) -> None:
        self.pg.sql(f"DELETE FROM {self.shop}.orders WHERE id IN ({', '.join(map(str, ids))})")

    def expected(self, contacts: range) -> dict[str, tuple[str, str, float]]:
        """crm id -> (first_name trait, plan trait, revenue) as PostgreSQL has it now ('' for a removed trait), for
        every contact ever inserted."""
        traits: dict[str, tuple[str, str]] = {}
        for row in self.pg.sql(f"SELECT id, first_name, plan FROM {self.crm}.contacts").splitlines():
            crm_id, first_name, plan = row.split("|")
            traits[crm_id] = (first_name, plan)
        revenue: dict[str, float] = {}
        for row in self.pg.sql(f"SELECT contact_id, sum(total) FROM {self.shop}.orders GROUP BY 1").splitlines():
            crm_id, total = row.split("|")
            revenue[crm_id] = round(float(total), 2)
        return {
            str(i): (*traits.get(str(i), ("", "")), revenue.get(str(i), 0.0))
            for i in contacts
            if i in self.contacts_ever
        }


def profiles_by_crm_id(cdp: CdpProcess, ids: list[str]) -> dict[str, tuple[str, str, float]]:
    rows = cdp.sql(
        "SELECT i.id_value, p.traits['first_name'], p.traits['plan'], round(p.revenue, 2) "
        "FROM cdp.identities AS i INNER JOIN cdp.profiles AS p ON p.profile_id = i.profile_id "
        f"WHERE i.id_type = 'crm_id' AND i.id_value IN ({in_list(ids)})"
    )
    return {r[0]: (r[1], r[2], float(r[3] or 0)) for r in rows}


def wait_converged(cdp: CdpProcess, shop: Shop, contacts: range, timeout: float) -> float:
    """Seconds until every contact's profile shows PostgreSQL's state; fails with the difference."""
    want = shop.expected(contacts)
    started = time.monotonic()
    while True:
        have = profiles_by_crm_id(cdp, list(want))
        if have == want:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            diff = {k: (want[k], have.get(k)) for k in want if have.get(k) != want[k]}
            stored = cdp.sql(
                "SELECT message_id, source_id, toString(ingested_at), properties, traits FROM cdp.events_store "
                f"WHERE JSONExtractString(context, 'traits', 'crm_id') IN ({in_list(diff)}) "
                f"OR JSONExtractString(traits, 'crm_id') IN ({in_list(diff)}) ORDER BY message_id, ingested_at"
            )
            diff["stored"] = stored  # type: ignore[assignment]
            raise AssertionError(f"not converged after {timeout:.0f} s: crm id -> (want, have) {diff}")
        time.sleep(0.2)


def events_of(cdp: CdpProcess, source: str) -> tuple[int, int]:
    """(events stored, distinct messageIds) of a source."""
    row = cdp.sql(f"SELECT count(), uniqExact(message_id) FROM cdp.events WHERE source_id = '{source}'")[0]
    return int(row[0]), int(row[1])


def create_source(cdp: CdpProcess, pg: Postgres, name: str, table: str, mapping: str) -> str:
    out = cdp_cli(
        cdp,
        "sources",
        "create",
        "--name",
        name,
        "--kind",
        "postgres",
        "--dsn",
        pg.dsn,
        "--table",
        table,
        "--mapping",
        mapping,
    )
    assert out.strip().splitlines()[-1].startswith("wk_"), out
    assert "password" not in out
    return out


def test_contacts_and_orders_follow_postgres_through_restarts(
    cdp: CdpProcess, postgres: Postgres, connect: Connect
) -> None:
    run = uuid.uuid4().hex[:8]
    shop = Shop(postgres, run)
    everyone = range(1, 16)
    shop.add_contacts(range(1, 11))  # before the sources exist: the initial snapshot reads them
    shop.add_orders(range(1, 21))

    create_source(cdp, postgres, "crm", f"{shop.crm}.contacts", "contacts")
    create_source(cdp, postgres, "orders", f"{shop.shop}.orders", "orders")
    wait_converged(cdp, shop, everyone, timeout=60)  # snapshot, and the connectors' start

    # Streaming: inserts, updates and deletes, each on the right profile within the bound.
    shop.add_contacts(range(11, 14))
    shop.add_orders(range(21, 26))
    shop.update_contacts([1, 2, 3], "platinum")
    shop.update_orders([4, 5], "1000.00")  # a corrected total replaces the order, it adds no second one
    shop.delete_contacts([9])  # its traits leave the profile; its identifiers and orders stay
    shop.delete_orders([10, 20])  # their revenue leaves the profile
    took = wait_converged(cdp, shop, everyone, timeout=30)
    print(f"cdc: inserts, updates and deletes on the profiles {took:.1f} s after the last commit")
    assert took < CONVERGE_S, f"took {took:.1f} s"
    assert "secret" not in str(cdp.sql("SELECT traits, context FROM cdp.events WHERE source_id = 'crm'"))

    # Kafka Connect dies and `cdp run` stops with changes in flight; more changes while both are down.
    shop.update_contacts([4], "silver")
    shop.add_orders(range(26, 28))
    connect.kill()
    assert cdp.stop() == 0
    shop.add_contacts(range(14, 16))
    shop.update_contacts([5, 14], "bronze")
    shop.delete_contacts([10])
    shop.update_orders([6], "7.00")
    shop.delete_orders([27])
    connect.start()
    cdp.start().wait_ready()
    wait_converged(cdp, shop, everyone, timeout=90)

    # Nothing doubled, nothing lost: one event per contact version and one per order, each stored once.
    ids = list(map(str, everyone))
    deadline = time.monotonic() + 20
    while events_of(cdp, "crm")[1] < shop.contact_versions and time.monotonic() < deadline:
        time.sleep(0.5)
    assert events_of(cdp, "crm") == (shop.contact_versions, shop.contact_versions)
    assert events_of(cdp, "orders") == (len(shop.orders_ever), len(shop.orders_ever))
    identities = cdp.scalar(
        f"SELECT count() FROM cdp.identities WHERE id_type = 'crm_id' AND id_value IN ({in_list(ids)})"
    )
    assert identities == len(ids)
    emails = [shop.email(i) for i in everyone]
    assert cdp.scalar(
        f"SELECT count() FROM cdp.identities WHERE id_type = 'email' AND id_value IN ({in_list(emails)})"
    ) == len(emails)  # normalised (lower-cased) as the collector does

    # Status: running, nothing waiting (read every few seconds), every row counted; the last error is the
    # time Connect was down.
    deadline = time.monotonic() + 15
    while True:
        lines = {li.split()[2]: li.split() for li in cdp_cli(cdp, "sources", "list").splitlines()[1:]}
        if all(lines[n][3:5] == ["running", "0"] for n in ("crm", "orders")) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for name, rows in (("crm", shop.contact_versions), ("orders", 27)):
        fields = lines[name]
        assert fields[:5] == ["postgres", "offline", name, "running", "0"], fields
        assert int(fields[5]) >= rows, fields
    assert "not reachable" in " ".join(lines["crm"])


def test_a_wrong_table_is_refused_before_anything_is_stored(cdp: CdpProcess, postgres: Postgres) -> None:
    out = cdp_cli(cdp, "sources", "list")
    with pytest.raises(AssertionError, match=r"Kafka Connect refused"):
        cdp_cli(
            cdp,
            "sources",
            "create",
            "--name",
            "bad",
            "--kind",
            "postgres",
            "--dsn",
            postgres.dsn.replace(str(postgres.port), "1"),
            "--table",
            "x.y",
            "--mapping",
            "contacts",
        )
    assert cdp_cli(cdp, "sources", "list") == out
