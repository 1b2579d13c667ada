"""Kafka Connect: the Debezium PostgreSQL connector of a `postgres` source, and Connect's REST API (thin).

Connect keeps the connector's position (the replication slot's log position) in its offsets topic and the
slot keeps the changes not yet read, so a restart of Connect, of the database or of `cdp` resumes where it
stopped. The connector writes one topic per table, ``PREFIX.cdc.SOURCE.SCHEMA.TABLE``, which the source's
mapper (streams/pull.py) reads.

The converter settings are part of the mapping's contract (schemas/mapping.py): JSON without schemas, numerics
as text (``decimal.handling.mode=string``: exact digits, not base64 bytes), ``timestamp`` columns as
milliseconds since 1970 and ``date`` columns as days (``time.precision.mode=connect``), ``timestamptz`` as
ISO-8601 text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$")


class ConnectError(RuntimeError):
    """Connect refused or could not be reached; the message is what it said."""


@dataclass(frozen=True)
class Dsn:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    sslmode: str | None

    @classmethod
    def parse(cls, text: str) -> Dsn:
        """``postgresql://USER:PASSWORD@HOST:PORT/DBNAME[?sslmode=...]``."""
        parts = urlsplit(text)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname or not parts.username:
            raise ValueError("dsn: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise ValueError("dsn: the database name is missing (postgresql://USER@HOST/DBNAME)")
        sslmode = parse_qs(parts.query).get("sslmode", [None])[0]
        return cls(
            parts.hostname,
            parts.port or 5432,
            unquote(parts.username),
            unquote(parts.password or ""),
            dbname,
            sslmode,
        )

    @property
    def redacted(self) -> str:
        """What may be shown and stored beside the source: no password."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def check_table(table: str) -> str:
    if not _TABLE.match(table):
        raise ValueError("table: expected SCHEMA.TABLE, e.g. crm.contacts")
    return table


def slot_name(topic_prefix: str, source: str) -> str:
    """Replication slot and publication names: lower-case letters, digits and underscores, at most 63."""
    return re.sub(r"[^a-z0-9_]", "_", f"{topic_prefix}_{source}".lower())[:63]


def connector_name(topic_prefix: str, source: str) -> str:
    return f"{topic_prefix}-{source}"


def connector_config(
    *,
    topic_prefix: str,
    cdc_prefix: str,
    source: str,
    dsn: Dsn,
    table: str,
    replica_identity_full: bool,
    partitions: int,
    replication: int,
) -> dict[str, str]:
    slot = slot_name(topic_prefix, source)
    config = {
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "database.hostname": dsn.host,
        "database.port": str(dsn.port),
        "database.user": dsn.user,
        "database.password": dsn.password,
        "database.dbname": dsn.dbname,
        "topic.prefix": cdc_prefix,
        "table.include.list": re.escape(table),
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": slot,
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "initial",
        "decimal.handling.mode": "string",
        "time.precision.mode": "connect",
        "interval.handling.mode": "string",
        "hstore.handling.mode": "json",
        "tombstones.on.delete": "false",
        # Keeps the slot's position moving while the table is quiet and other tables write: else the database
        # keeps all of its log for the slot.
        "heartbeat.interval.ms": "10000",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "topic.creation.default.partitions": str(partitions),
        "topic.creation.default.replication.factor": str(replication),
        # Compacted by row key: a replay from the start reads every row's latest state, not all of history.
        "topic.creation.default.cleanup.policy": "compact",
    }
    if dsn.sslmode:
        config["database.sslmode"] = dsn.sslmode
    if replica_identity_full:
        config["replica.identity.autoset.values"] = f"{table}:FULL"
    return config


class ConnectClient:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = self._http.request(method, f"{self.url}{path}", json=body)
        except httpx.HTTPError as exc:
            raise ConnectError(f"Kafka Connect at {self.url} is not reachable ({exc}); is it running?") from exc
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text
            raise ConnectError(f"Kafka Connect answered {r.status_code}: {message}")
        return r.json() if r.content else {}

    def validate(self, config: dict[str, str]) -> list[str]:
        """Connect's own check of a configuration (Debezium connects to the database to do it): the errors."""
        answer = self._call("PUT", f"/connector-plugins/{CONNECTOR_CLASS}/config/validate", config) or {}
        errors = []
        for item in answer.get("configs", []):
            value = item.get("value") or {}
            for message in value.get("errors") or []:
                errors.append(f"{value.get('name')}: {message}")
        return errors

    def put(self, name: str, config: dict[str, str]) -> None:
        """Create or update (idempotent)."""
        self._call("PUT", f"/connectors/{name}/config", config)

    def status(self, name: str) -> dict[str, Any] | None:
        answer: dict[str, Any] | None = self._call("GET", f"/connectors/{name}/status")
        return answer

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/connectors/{name}")

    def close(self) -> None:
        self._http.close()


def connector_state(status: dict[str, Any] | None) -> tuple[str, str | None]:
    """(state, error) of a connector from its status: RUNNING, FAILED with the task's trace, ..."""
    if status is None:
        return "missing", "the connector is not registered in Kafka Connect"
    states = [status.get("connector", {}).get("state", "UNKNOWN")]
    error = status.get("connector", {}).get("trace")
    for task in status.get("tasks", []):
        states.append(task.get("state", "UNKNOWN"))
        error = error or task.get("trace")
    for bad in ("FAILED", "PAUSED", "UNASSIGNED", "RESTARTING"):
        if bad in states:
            return bad.lower(), (error.strip().splitlines()[0][:500] if error else None)
    if not status.get("tasks"):
        return "starting", None
    return ("running", None) if all(s == "RUNNING" for s in states) else (states[-1].lower(), None)
