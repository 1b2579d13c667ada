"""cdc: rows/s from a PostgreSQL table's snapshot to settled profiles, through Kafka Connect and `cdp run`.

A PostgreSQL server of its own (wal_level=logical) gets a contacts table of N rows (generate_series: a unique
e-mail and CRM id each), Kafka Connect starts on the bench broker, `cdp run` starts with its own topics, and a
database source with the shipped contacts mapping is created. From that moment three end offsets and one
count are timed:

* the Debezium topic has N records: the connector's snapshot (Connect's own speed, the baseline);
* the raw offline topic has N records: the snapshot mapped to identify events (the source's mapper);
* ClickHouse has N events of the source and N crm_id identities: settled profiles, stitching and sinks
  included (the figure).

The settled rate is bounded by stitching (bench stage `stitching`), which is why it sits far below the other
two; the table shows both so the difference is visible.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from bench.context import Context
from bench.core import Result, StageError, register
from bench.stack import ROOT, CdpClient, Connect, OffsetCounter, Postgres


def _seed(pg: Postgres, rows: int) -> None:
    pg.sql(
        f"""
        CREATE SCHEMA crm;
        CREATE TABLE crm.contacts (id bigint PRIMARY KEY, email text, phone text, first_name text, last_name text,
            plan text, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now());
        INSERT INTO crm.contacts (id, email, first_name, last_name, plan)
        SELECT i, 'c' || i || '@example.com', 'First' || i, 'Last' || i, (ARRAY['free', 'gold', 'platinum'])[i % 3 + 1]
        FROM generate_series(1, {rows}) AS i;
        """
    )


def _wait(what: str, current: Callable[[], int], target: int, started: float, timeout: float) -> float:
    """Seconds from ``started`` until ``current()`` reaches ``target``."""
    deadline = started + timeout
    value = 0
    while time.perf_counter() < deadline:
        value = current()
        if value >= target:
            return time.perf_counter() - started
        time.sleep(0.2)
    raise StageError(f"cdc: {what} reached {value:,} of {target:,} in {timeout:.0f} s")


@register
class CdcStage:
    name = "cdc"
    description = "rows/s from a PostgreSQL snapshot (Debezium on Kafka Connect) to settled profiles"

    def run(self, ctx: Context) -> list[Result]:
        m = ctx.mode
        rows = m.cdc_rows
        pg = Postgres()
        connect = Connect(ctx.workdir / "cdc-connect", ctx.bootstrap, ctx.prefix("connect"))
        try:
            pg.start()
            ctx.log(f"cdc: seeding {rows:,} contacts in PostgreSQL")
            _seed(pg, rows)
            started = time.perf_counter()
            connect.start()
            ctx.log(f"cdc: Kafka Connect up in {time.perf_counter() - started:.1f} s")
            prefix = ctx.prefix("cdc")
            cdp = ctx.start_cdp("run", "cdc", prefix, CDP_CONNECT_URL=connect.url, CDP_LOG_LEVEL="INFO")
            watch = ctx.watch(cdp=cdp.pid, connect=connect.pid)
            env = {**cdp.env, "CDP_DATA_DIR": str(ctx.workdir / "cdc-cli")}
            env.pop("CDP_CLICKHOUSE_URL", None)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "cdp.cli", "sources", "create", "--name", "crm", "--kind", "postgres",
                 "--dsn", pg.dsn, "--table", "crm.contacts", "--mapping", "contacts"],
                env=env, cwd=ROOT, check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            cdc_topic = f"{prefix}.cdc.crm.crm.contacts"
            debezium = OffsetCounter(ctx.bootstrap, [cdc_topic])
            raw = OffsetCounter(ctx.bootstrap, [f"{prefix}.events.offline"])
            try:
                snapshot_s = _wait("the Debezium topic", debezium.count, rows, started, m.cdc_timeout_s)
                mapped_s = _wait("the raw topic", raw.count, rows, started, m.cdc_timeout_s)
            finally:
                debezium.close()
                raw.close()
            sql = CdpClient(cdp.url, cdp.admin_token, cdp.write_keys, ctx.bootstrap, prefix, cdp.pid, cdp.privacy_key)
            try:
                settled_s = _wait(
                    "settled profiles",
                    lambda: min(
                        int(sql.scalar("SELECT count() FROM cdp.events WHERE source_id = 'crm'")),
                        int(sql.scalar("SELECT count() FROM cdp.identities WHERE id_type = 'crm_id'")),
                    ),
                    rows,
                    started,
                    m.cdc_timeout_s,
                )
            finally:
                sql.close()
            peaks = watch.read()
            stopping = time.perf_counter()
            ctx.stop_cdp(cdp)  # before Connect, as a deployment stops: the part's own shutdown is part of it
            ctx.log(f"cdc: cdp run stopped in {time.perf_counter() - stopping:.1f} s")
        finally:
            connect.stop()
            pg.stop()
            shutil.rmtree(pg.root, ignore_errors=True)
        details = {"rows": rows, "snapshot_s": round(snapshot_s, 2), "mapped_s": round(mapped_s, 2)}
        return [
            Result(
                self.name,
                f"snapshot of {rows:,} rows to settled profiles",
                rows / settled_s,
                "rows/s",
                baseline=rows / snapshot_s,
                baseline_label="Debezium snapshot into Kafka",
                peak_rss_mb=peaks,
                details={**details, "settled_s": round(settled_s, 2)},
            ),
            Result(
                self.name,
                f"snapshot of {rows:,} rows mapped to events",
                rows / mapped_s,
                "rows/s",
                baseline=rows / snapshot_s,
                baseline_label="Debezium snapshot into Kafka",
                details=details,
            ),
        ]
