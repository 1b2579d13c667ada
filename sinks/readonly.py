"""Read-only SQL for analysts.

`readonly=1` is not enough for an embedded engine: it would still run `file()`, `url()`, `s3()` and other
table functions that read the disk and the network. So the statement is checked first, with string literals
and comments removed: one statement, starting with SELECT / WITH / SHOW / DESCRIBE / EXPLAIN / EXISTS, no
table functions that reach outside the database, no SETTINGS clause, no INTO OUTFILE. Then it runs with
`readonly=1` where the engine honours it.
"""

from __future__ import annotations

import re
from typing import Any

from sinks.clickhouse import ClickHouse

ALLOWED_START = ("select", "with", "show", "describe", "desc", "explain", "exists")
TABLE_FUNCTIONS = (
    "file",
    "url",
    "s3",
    "s3cluster",
    "gcs",
    "azureblobstorage",
    "azureblobstoragecluster",
    "hdfs",
    "hdfscluster",
    "remote",
    "remotesecure",
    "cluster",
    "clusterallreplicas",
    "mysql",
    "postgresql",
    "sqlite",
    "odbc",
    "jdbc",
    "mongodb",
    "redis",
    "input",
    "executable",
    "dictionary",
    "urlcluster",
    "filecluster",
    "iceberg",
    "icebergs3",
    "deltalake",
    "hudi",
    "python",
    "arrowflight",
    "ytsaurus",
    "loop",
    "merge",
    "view",
    "format",
    "fuzzjson",
    "generaterandom",
    "numbers_mt",
)
_FORBIDDEN_CALL = re.compile(r"\b(" + "|".join(TABLE_FUNCTIONS) + r")\s*\(", re.IGNORECASE)
_FORBIDDEN_WORDS = re.compile(
    r"\b(settings|outfile|insert|alter|drop|truncate|attach|detach|rename|"
    r"optimize|system|kill|grant|revoke|create|set|use|backup|restore)\b",
    re.IGNORECASE,
)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"", re.DOTALL)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/|#[^\n]*", re.DOTALL)


class ReadOnlyViolation(ValueError):
    """The statement is not a plain read of the database."""


def check_readonly(query: str) -> str:
    """Return the statement (trailing `;` removed) or raise ReadOnlyViolation saying why."""
    stripped = _STRINGS.sub("''", query)
    stripped = _COMMENTS.sub(" ", stripped).strip().rstrip(";").strip()
    if not stripped:
        raise ReadOnlyViolation("empty query")
    if ";" in stripped:
        raise ReadOnlyViolation("one statement only")
    first = stripped.split(None, 1)[0].lower()
    if first not in ALLOWED_START:
        raise ReadOnlyViolation(f"only {', '.join(s.upper() for s in ALLOWED_START)} statements are allowed")
    if m := _FORBIDDEN_CALL.search(stripped):
        raise ReadOnlyViolation(f"table function {m.group(1).lower()}() is not allowed")
    # `system.` tables are fine to read; SYSTEM statements are caught by the first-word check.
    words = _FORBIDDEN_WORDS.findall(re.sub(r"\bsystem\s*\.", "", stripped, flags=re.IGNORECASE))
    if words:
        raise ReadOnlyViolation(f"keyword {words[0].upper()} is not allowed in read-only SQL")
    return query.strip().rstrip(";")


def run_readonly(ch: ClickHouse, query: str, max_rows: int = 100_000) -> tuple[list[str], list[list[Any]]]:
    sql = check_readonly(query)
    settings = {"readonly": 2, "max_result_rows": max_rows, "result_overflow_mode": "break", "max_execution_time": 60}
    columns, rows = ch.query(sql, settings=settings)
    return columns, [list(r) for r in rows]
