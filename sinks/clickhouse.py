"""ClickHouse access through clickhouse-connect only: `chdb://path` (embedded engine, in-process) or
`http(s)://host:8123` (a server), same code and same SQL.

A chDB folder can be opened by one process only. Within it every client has its own engine handle, and calls on
one handle must not overlap, so every call goes through one lock per client; threads that need to work in
parallel (the sink's writers) each take their own client (`sibling()`).
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError


class StoreInUse(RuntimeError):
    """The embedded store's folder is open in another process: the message says which folder and what to do."""


def _held_elsewhere(folder: str) -> bool:
    """Whether another process holds the engine's lock on the folder (the ``status`` file, locked with flock
    as a ClickHouse server does). Asked after an open failed: chDB's own message does not always say why."""
    status = Path(folder) / "status"
    if not status.exists():
        return False
    with status.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _dedup_settings(token: str | None, deduplicate: bool) -> dict[str, Any]:
    """The engine's insert deduplication for one block: by ``token``, also in the materialized views the
    block feeds (a view whose earlier insert failed gets the retry, and checks it against its own log), or off."""
    if not deduplicate:
        return {"insert_deduplicate": 0}
    if not token:
        return {}
    return {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}


class ClickHouse:
    def __init__(
        self,
        url: str,
        database: str = "cdp",
        *,
        session_settings: Mapping[str, Any] | None = None,
        in_database: bool = False,
    ) -> None:
        """``session_settings`` hold for every call of this client (applied in order, so a `readonly` given last
        still lets the ones before it be set); ``in_database`` makes ``database`` the session's current one
        (it must exist: migrations create it, so the pipeline's own clients start in `default`)."""
        self.url = url
        self.database = database
        self.embedded = url.startswith("chdb://")
        self._lock = threading.RLock()
        current = database if in_database else None
        settings = dict(session_settings or {})
        if self.embedded:
            try:
                self._client = clickhouse_connect.get_client(dsn=url, database=current, settings=settings)
            except ClickHouseError:
                folder = url[len("chdb://") :].split("?", 1)[0]
                if _held_elsewhere(folder):
                    raise StoreInUse(
                        f"the embedded ClickHouse store {folder} is open in another process (a running "
                        "`cdp run`?): one process at a time opens a chDB folder; `cdp run` serves the API itself, "
                        "or run the parts apart against a ClickHouse server (CDP_CLICKHOUSE_URL)"
                    ) from None
                raise
        else:
            self._client = clickhouse_connect.get_client(dsn=url, database=current or "default", settings=settings)

    def sibling(self) -> ClickHouse:
        """Another client on the same engine or server, for a thread that must not wait for this one's lock."""
        return ClickHouse(self.url, self.database)

    def command(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> Any:
        with self._lock:
            return self._client.command(sql, parameters=parameters, settings=settings)

    def query(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self._lock:
            result = self._client.query(sql, parameters=parameters, settings=settings)
            return list(result.column_names), [tuple(r) for r in result.result_rows]

    def scalar(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        _, rows = self.query(sql, parameters)
        return rows[0][0] if rows else None

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        dedup_token: str | None = None,
        *,
        deduplicate: bool = True,
    ) -> None:
        """Insert one block of rows. With a dedup token, a retried block is dropped by the engine (tables carry
        `non_replicated_deduplication_window`), so a retry after an unknown outcome never doubles rows.
        ``deduplicate=False`` turns the engine's check off for this block (sinks/writer.py says when).

        Sent column-oriented, which chDB takes faster than row tuples (the sink stage of `make bench`)."""
        data = [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in columns]
        self.insert_columns(table, data, columns, dedup_token, deduplicate=deduplicate)

    def insert_columns(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        columns: Sequence[str],
        dedup_token: str | None = None,
        *,
        deduplicate: bool = True,
    ) -> None:
        """Insert one block given column by column (``data[i]`` holds every value of ``columns[i]``)."""
        settings = _dedup_settings(dedup_token, deduplicate) or None
        with self._lock:
            self._client.insert(
                table,
                data,
                column_names=list(columns),
                database=self.database,
                settings=settings,
                column_oriented=True,
            )

    def insert_json_lines(
        self, table: str, lines: Sequence[bytes], dedup_token: str | None = None, *, deduplicate: bool = True
    ) -> None:
        """Insert JSON objects (one per line) and let the engine parse them: for landing tables whose
        materialized views map the records (sinks/views/events_landing_mv.sql)."""
        settings: dict[str, Any] = {
            "input_format_json_read_objects_as_strings": 1,
            "input_format_json_read_numbers_as_strings": 1,
            "input_format_json_read_bools_as_strings": 1,
            "input_format_skip_unknown_fields": 1,
            # The landing table feeds two views (events_store and the anonymous profiles): one thread each.
            "parallel_view_processing": 1,
            # Parsing one block in several threads costs more CPU per row than it saves in time once the sink
            # writers keep every core busy (README, "Why these settings").
            "input_format_parallel_parsing": 0,
        }
        settings.update(_dedup_settings(dedup_token, deduplicate))
        with self._lock:
            self._client.raw_insert(
                f"{self.database}.{table}", None, b"\n".join(lines), settings=settings, fmt="JSONEachRow"
            )

    def ping(self) -> bool:
        try:
            return bool(self.scalar("SELECT 1") == 1)
        except Exception:
            return False

    def close(self) -> None:
        with self._lock:
            self._client.close()
