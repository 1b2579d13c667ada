"""Helpers shared by the end-to-end tests: timestamps, message ids, waiting for rows in ClickHouse, reading a
topic from the beginning, `cdp import` as a user runs it."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tests.support.service import ROOT, CdpProcess

CHROME_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso(delta_s: float = 0.0) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=delta_s))


def mid(tag: str = "m") -> str:
    return f"{tag}-{uuid.uuid4().hex}"


def in_list(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


def wait_rows(
    cdp: CdpProcess, ids: list[str], columns: str = "message_id, type, event, channel", timeout: float = 60.0
) -> dict[str, list[Any]]:
    """Wait until every message id is in cdp.events; return message_id -> row (first column is the id)."""
    cdp.wait_for(f"SELECT count() FROM cdp.events WHERE message_id IN ({in_list(ids)})", len(ids), timeout=timeout)
    rows = cdp.sql(f"SELECT {columns} FROM cdp.events WHERE message_id IN ({in_list(ids)})")
    return {r[0]: r for r in rows}


def read_topic(
    bootstrap: str, topic: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Read a topic from the beginning (all partitions) until ``done(records)`` or the timeout."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    records: list[dict[str, Any]] = []
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = list(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(records):
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            records.append(orjson.loads(msg.value()))
    finally:
        consumer.close()
    return records


def suppressed_events(cdp: CdpProcess) -> float:
    """The collector's ``cdp_events_suppressed_total``, summed over channels, from its /metrics."""
    lines = httpx.get(f"{cdp.url}/metrics", timeout=10).text.splitlines()
    return sum(float(li.rsplit(" ", 1)[1]) for li in lines if li.startswith("cdp_events_suppressed_total{"))


def latest_by_key(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[bytes, bytes | None]:
    """Key -> its latest value (None: a tombstone) in a topic, read from the beginning to the end it has now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex[:8]}"})
    latest: dict[bytes, bytes | None] = {}
    try:
        parts = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            tp.offset < ends[tp.partition] for tp in consumer.position([TopicPartition(topic, p) for p in parts])
        ):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error() and msg.key() is not None:
                latest[msg.key()] = msg.value()
    finally:
        consumer.close()
    return latest


def group_members(bootstrap: str, group: str, want: int = 2, timeout: float = 60) -> int:
    """Members of the group that own partitions, once there are ``want`` of them (else the last count seen)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    members = 0
    while time.monotonic() < deadline:
        desc = admin.describe_consumer_groups([group])[group].result(10)
        members = sum(1 for m in desc.members if m.assignment.topic_partitions)
        if members == want:
            return members
        time.sleep(1)
    return members


def cdp_import(
    cdp: CdpProcess, file: Path, key: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with its own data folder: it must not touch the service's chDB store. It is given
    the stack's privacy key, as the README tells a user to (an import refuses to run without it once anyone is
    suppressed)."""
    cli_dir = file.parent / "cli-data"
    key_file = cdp.data_dir / "privacy_key"
    privacy = {"CDP_PRIVACY_KEY": key_file.read_text().strip()} if key_file.exists() else {}
    env = {**cdp.env, "CDP_DATA_DIR": str(cli_dir), **privacy, **(env or {})}
    env.pop("CDP_CLICKHOUSE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "import", str(file), "--write-key", key, *extra],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not (cli_dir / "clickhouse").exists(), "cdp import opened a chDB store"
    return proc
