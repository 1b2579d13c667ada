"""Analyst SQL on the engine: parsed by the engine, checked by sinks/sql_guard.py, run under fixed limits.

Each statement goes through three calls on a client of its own:

1. `formatQuerySingleLine` of the statement, passed as a bound string: the engine refuses several statements
   or a syntax error here, and what comes back (one line, no comments) is the only text used from then on.
   The statement is never pasted into other SQL: the embedded engine runs every statement of a call that
   holds several.
2. `parseQueryToJSON` of that text: the tree sinks/sql_guard.py walks.
3. The same text, on a client whose session holds the limits (memory, rows and bytes read, result rows and
   bytes, execution time, threads) and `readonly`, set when the client was made. What runs is what was checked.

The clients are apart from the pipeline's own, so a slow analyst query never holds the lock of the client
that serves profiles or writes batches. How many run at once is the caller's choice (a semaphore at the
HTTP route); this pool only holds that many clients.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from dataclasses import dataclass
from typing import Any

import orjson

from sinks.clickhouse import ClickHouse
from sinks.sql_guard import ALLOWED_STATEMENTS, Policy, SqlRefused, check, describe_as_select

log = logging.getLogger(__name__)
_CODE = re.compile(r"Code: (\d+)\.")
# The engine quotes the call a parse error happened in; that is this module's wrapper, not the analyst's SQL.
_OUR_CALL = re.compile(r": In scope SELECT (?:formatQuerySingleLine|parseQueryToJSON)\(.*\)\. \(")
SYNTAX_ERROR = 62
BAD_ARGUMENTS = 36
UNKNOWN_FUNCTION = 46


@dataclass(frozen=True)
class SqlLimits:
    """The limits every analyst query runs under. Each field is the setting `CDP_SQL_<FIELD>`, whose default
    lives in the one settings class."""

    max_memory_mb: int
    max_rows_read: int
    max_read_mb: int
    max_result_rows: int
    max_result_mb: int
    timeout_s: float
    max_threads: int

    def engine_settings(self) -> dict[str, Any]:
        mib = 1024 * 1024
        return {
            "max_memory_usage": self.max_memory_mb * mib,
            "max_rows_to_read": self.max_rows_read,
            "max_bytes_to_read": self.max_read_mb * mib,
            "read_overflow_mode": "throw",
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_mb * mib,
            "result_overflow_mode": "throw",
            "max_execution_time": self.timeout_s,
            "timeout_overflow_mode": "throw",
            "max_threads": self.max_threads,
        }

    def named(self, engine_setting: str) -> str:
        """`CDP_SQL_MAX_MEMORY_MB=1024` for `max_memory_usage`: what an analyst reads in a refusal."""
        field_name = _LIMIT_FIELDS[engine_setting]
        return f"CDP_SQL_{field_name.upper()}={getattr(self, field_name)}"


_LIMIT_FIELDS = {
    "max_memory_usage": "max_memory_mb",
    "max_rows_to_read": "max_rows_read",
    "max_bytes_to_read": "max_read_mb",
    "max_result_rows": "max_result_rows",
    "max_result_bytes": "max_result_mb",
    "max_execution_time": "timeout_s",
}
# Engine error codes of the limits above.
_LIMIT_CODES = {241: "max_memory_usage", 158: "max_rows_to_read", 307: "max_bytes_to_read", 159: "max_execution_time"}
_LIMIT_CODES |= {160: "max_execution_time", 396: "max_result_rows"}


class SqlLimitExceeded(Exception):
    """The query went over one of the limits; ``limit`` names it (`CDP_SQL_MAX_MEMORY_MB=1024`)."""

    def __init__(self, limit: str, engine_message: str) -> None:
        super().__init__(f"over the limit {limit}: {engine_message}")
        self.limit = limit


def engine_message(exc: BaseException) -> str:
    """The engine's own sentence (from `Code: N.` on, one line), without the driver's wrapping."""
    text = str(exc)
    start = text.find("Code: ")
    text = text[start:] if start >= 0 else text
    return _OUR_CALL.sub(". (", text.split("\n", 1)[0])[:500]


def limit_exceeded(exc: BaseException, limits: SqlLimits) -> SqlLimitExceeded | None:
    """Which of ``limits`` an engine error reports, if any."""
    message = engine_message(exc)
    m = _CODE.search(message)
    setting = _LIMIT_CODES.get(int(m.group(1))) if m else None
    if setting is None:
        return None
    if setting == "max_memory_usage" and "(total)" in message:
        return SqlLimitExceeded("the engine's total memory (max_server_memory_usage)", message)
    if setting == "max_result_rows" and "max bytes" in message:
        setting = "max_result_bytes"
    return SqlLimitExceeded(limits.named(setting), message)


class AnalystSql:
    """Guarded, limited SQL for analysts on ``url`` (chDB or a server), reading ``database``."""

    def __init__(self, url: str, database: str, limits: SqlLimits, clients: int = 1) -> None:
        self.url = url
        self.database = database
        self.limits = limits
        self.embedded = url.startswith("chdb://")
        self._idle: queue.Queue[ClickHouse] = queue.Queue()
        self._made = 0
        self._max_clients = clients
        self._made_lock = threading.Lock()
        self._policy: Policy | None = None

    def session_settings(self) -> dict[str, Any]:
        """The limits, then `readonly`. The embedded engine takes `readonly=1` last, so nothing after it may
        change a setting, and the engine itself then also refuses the table functions that read storage
        (`file`, `url`, `executable`...): a second wall behind the guard. A server receives the settings with
        every request and `readonly=1` would refuse them there, so it gets `readonly=2` (no writes; the
        server's own user, grants and quotas are its second wall, see the README)."""
        return {**self.limits.engine_settings(), "readonly": 1 if self.embedded else 2}

    def run(self, query: str) -> tuple[list[str], list[list[Any]]]:
        """Check ``query`` and run it; raises SqlRefused or SqlLimitExceeded, or the engine's own error."""
        client = self._take()
        try:
            sql = self._checked(client, query)
            try:
                columns, rows = client.query(sql)
            except Exception as exc:
                over = limit_exceeded(exc, self.limits)
                if over is not None:
                    raise over from exc
                raise
            return columns, [list(r) for r in rows]
        finally:
            self._idle.put(client)

    def _checked(self, client: ClickHouse, query: str) -> str:
        """The text that runs for ``query`` (the engine's one-line form of it), or SqlRefused."""
        canonical = str(self._parse(client, "SELECT formatQuerySingleLine({q:String})", query))
        probe = describe_as_select(canonical) or canonical
        tree = orjson.loads(self._parse(client, "SELECT parseQueryToJSON({q:String})", probe))
        check(tree, self._policy_for(client))
        return canonical

    def _parse(self, client: ClickHouse, sql: str, query: str) -> Any:
        try:
            return client.scalar(sql, {"q": query})
        except Exception as exc:
            message = engine_message(exc)
            m = _CODE.search(message)
            code = int(m.group(1)) if m else None
            if code == SYNTAX_ERROR:
                raise SqlRefused(f"not one statement the engine can parse: {message}") from exc
            if code == BAD_ARGUMENTS:
                raise SqlRefused(f"a statement the guard cannot read ({ALLOWED_STATEMENTS}): {message}") from exc
            if code == UNKNOWN_FUNCTION and "parseQueryToJSON" in message:
                raise SqlRefused("this ClickHouse server has no parseQueryToJSON (26.x and later have it)") from exc
            raise

    def _policy_for(self, client: ClickHouse) -> Policy:
        """The policy, with the server's own functions (SQL and executable UDFs) added to the refused ones:
        what they do is defined outside this allow list."""
        if self._policy is None:
            try:
                _, rows = client.query("SELECT lower(name) FROM system.functions WHERE origin != 'System'")
                own = frozenset(str(r[0]) for r in rows)
            except Exception:
                log.warning("could not list the engine's user-defined functions", exc_info=True)
                own = frozenset()
            self._policy = Policy(self.database, own)
        return self._policy

    def _take(self) -> ClickHouse:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._made_lock:
            if self._made < self._max_clients:
                self._made += 1
                try:
                    return ClickHouse(
                        self.url, self.database, session_settings=self.session_settings(), in_database=True
                    )
                except Exception:
                    self._made -= 1
                    raise
        return self._idle.get()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
