"""The sink stage's measuring process (a chDB folder can be opened by one process only, so the sink and its
raw baseline run here, in their own folder, apart from any cdp process).

0. Warm-up (untimed): two blocks of the same records into a scratch database, dropped afterwards.
1. sinks.writer.KafkaSink reads the pre-produced stitched events from Kafka into `cdp.events_store`; rows/s is
   taken from the arrival of the first records to the last row written (the consumer group join before it is
   not the sink's speed), and also reported from the sink's start.
2. The raw baseline: the same records, read back from Kafka beforehand (not timed), inserted as they are into
   `raw.events_landing` (same DDL, same views, so the same engine work) in blocks of the sink's batch size: the
   engine's limit for these rows without Kafka or the sink's loop. For reference, the same rows mapped in
   Python are also inserted straight into events_store, row- and column-oriented (these skip the landing's
   views, so the anonymous profiles are not built).

    python -m bench.sink_child --bootstrap HOST:PORT --topic T --rows N --chdb DIR [--batch-rows 50000]
                               [--flush-s 0.25] [--timeout 600]

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson


def _read_back(bootstrap: str, topic: str, rows: int, timeout: float) -> list[bytes]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-sink-raw-{time.time_ns()}", "enable.auto.commit": False}
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < rows and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10_000, timeout=0.5):
                value = m.value()
                if m.error() is None and value is not None:
                    values.append(value)
    finally:
        consumer.close()
    return values


def run(
    bootstrap: str, topic: str, rows: int, chdb: str, batch_rows: int, flush_s: float, timeout: float
) -> dict[str, Any]:
    from bench.stack import self_peak_rss_mb
    from sinks.clickhouse import ClickHouse
    from sinks.migrate import migrate
    from sinks.rows import EVENT_COLUMNS, event_row
    from sinks.writer import KafkaSink

    def sink_routes_for_events(name: str):  # the route `cdp run` uses for the stitched topic
        from cdp.runner import sink_routes
        from schemas.settings import Settings

        return sink_routes(Settings(topic_prefix="x"))["x.events.stitched"]

    url = f"chdb://{chdb}"
    warm_values = _read_back(bootstrap, topic, min(rows, 2 * batch_rows), timeout)
    # Warm-up, untimed, in a database of its own: a fresh engine's first 50k-row blocks took up to twice as long
    # as later ones (thread pools, allocator arenas, compiled expressions). A sink runs for days, so neither
    # figure should include them: the sink and the raw baseline both run after it.
    warm = ClickHouse(url, "warmup")
    migrate(warm)
    warm_t0 = time.perf_counter()
    for i in range(0, len(warm_values), batch_rows):
        warm.insert_json_lines("events_landing", warm_values[i : i + batch_rows])
    warm_s = time.perf_counter() - warm_t0
    warm_rows = len(warm_values)
    del warm_values
    warm.command("DROP DATABASE warmup SYNC")
    warm.close()

    ch = ClickHouse(url, "cdp")
    migrate(ch)
    sink = KafkaSink(
        ch,
        bootstrap,
        f"bench-sink-{time.time_ns()}",
        {topic: sink_routes_for_events(topic)},
        batch_rows,
        flush_s,
    )
    started = time.perf_counter()
    sink.start()
    while sink.rows_written < rows and time.perf_counter() - started < timeout:
        time.sleep(0.005)
    ended = time.perf_counter()
    written = sink.rows_written
    first_at = sink.first_read_at or started
    sink.stop()
    if written < rows:
        raise SystemExit(f"sink wrote {written} of {rows} rows in {timeout:.0f} s")
    stored = ch.scalar("SELECT count() FROM cdp.events_store")
    sink_rss = self_peak_rss_mb()  # before the baseline below holds every record (and every row) in memory
    sink_rate = rows / (ended - first_at)

    values = _read_back(bootstrap, topic, rows, timeout)
    raw = ClickHouse(url, "raw")
    migrate(raw)
    t0 = time.perf_counter()
    for i in range(0, len(values), batch_rows):
        raw.insert_json_lines("events_landing", values[i : i + batch_rows], dedup_token=f"raw-{i}")
    landing_s = time.perf_counter() - t0
    landing_count = raw.scalar("SELECT count() FROM raw.events_store")
    raw.command("TRUNCATE TABLE raw.events_store")

    prepared = [event_row(orjson.loads(v)) for v in values]
    t0 = time.perf_counter()
    for i in range(0, len(prepared), batch_rows):
        raw.insert("events_store", prepared[i : i + batch_rows], EVENT_COLUMNS)
    raw_s = time.perf_counter() - t0
    raw_count = raw.scalar("SELECT count() FROM raw.events_store")

    # Column-oriented insert of the same rows (what a columnar sink could reach), into a copy of the table.
    raw.command("CREATE TABLE IF NOT EXISTS raw.events_store_columnar AS raw.events_store")
    columns = [list(col) for col in zip(*prepared, strict=True)] if prepared else []
    t0 = time.perf_counter()
    for i in range(0, len(prepared), batch_rows):
        raw.insert_columns("events_store_columnar", [c[i : i + batch_rows] for c in columns], EVENT_COLUMNS)
    columnar_s = time.perf_counter() - t0
    ch.close()
    return {
        "rows": rows,
        "sink_rows_written": written,
        "sink_rows_stored": stored,
        "sink_rows_per_s": sink_rate,
        "sink_rows_per_s_from_start": rows / (ended - started),
        "sink_seconds_to_first_records": (first_at - started),
        "warmup_rows": warm_rows,
        "warmup_rows_per_s": warm_rows / warm_s if warm_s else None,
        "raw_rows": len(values),
        "raw_rows_stored": landing_count,
        "raw_rows_per_s": len(values) / landing_s if landing_s else None,
        "events_store_row_insert_rows_per_s": len(prepared) / raw_s if raw_s else None,
        "events_store_row_insert_stored": raw_count,
        "events_store_columnar_rows_per_s": len(prepared) / columnar_s if columnar_s else None,
        "mean_value_bytes": sum(len(v) for v in values) / len(values) if values else 0,
        "batch_rows": batch_rows,
        "flush_s": flush_s,
        "sink_peak_rss_mb": sink_rss,
        "rss_mb": self_peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sink_child")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--chdb", required=True)
    p.add_argument("--batch-rows", type=int, default=50_000)
    p.add_argument("--flush-s", type=float, default=0.25)
    p.add_argument("--timeout", type=float, default=600.0)
    a = p.parse_args(argv)
    out = run(a.bootstrap, a.topic, a.rows, a.chdb, a.batch_rows, a.flush_s, a.timeout)
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
