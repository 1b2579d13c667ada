"""The `cdp` command."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from typing import Any

import orjson

from cdp.local_stack import PROBE_S, local_settings, require_kafka
from schemas.settings import CHANNELS, SOURCE_KINDS, Settings

# The serving commands: `run` is every other role in one process.
ROLES = {
    "run": "collector, workers and query API in one process (embedded chDB)",
    "collector": "the HTTP collector alone",
    "worker": "Faust agents and ClickHouse sinks alone",
    "api": "the query API alone",
}
# `cdp sources create` options beyond name, channel and kind, passed on as keywords.
SOURCE_OPTIONS = {
    "dsn": "postgres: postgresql://USER:PASSWORD@HOST:PORT/DBNAME",
    "table": "postgres: SCHEMA.TABLE",
    "mapping": "postgres: contacts, orders or a file; webhook: stripe, shopify or a file",
    "path": "folder: the directory to watch",
    "secret_file": "webhook: a file holding the sender's signing secret (else generated)",
    "phone_region": "country of the source's national phone numbers (FR); default: the rules'",
    "consent_default": "consent of events without a consent object, e.g. advertising=true (default: advertising=false)",
}


def _settings() -> Settings:
    return Settings()


def cmd_serve(parts: frozenset[str]) -> int:
    from cdp.runner import run

    return run(_settings(), parts)


def _sql_via_service(settings: Settings, query: str) -> tuple[list[str], list[list[Any]]]:
    """The embedded store is held by `cdp run`: ask the running service, with the analyst token."""
    import httpx

    settings.ensure_tokens()
    url = f"http://{settings.http_host}:{settings.http_port}/v1/sql"
    try:
        r = httpx.post(
            url,
            json={"query": query},
            headers={"Authorization": f"Bearer {settings.analyst_token}"},
            timeout=httpx.Timeout(settings.sql_timeout_s + settings.sql_queue_s + 30, connect=PROBE_S),
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise SystemExit(f"cdp sql: the service at {url} is not reachable ({exc}); is `cdp run` running?") from None
    except httpx.HTTPError as exc:
        raise SystemExit(f"cdp sql: the service at {url} did not answer ({exc})") from None
    if r.status_code != 200:
        raise SystemExit(f"cdp sql: {r.status_code} {r.json().get('error', r.text)}")
    body = r.json()
    return body["columns"], body["rows"]


def cmd_sql(query: str, fmt: str) -> int:
    settings = local_settings()
    if settings.embedded_clickhouse:
        columns, rows = _sql_via_service(settings, query)
    else:  # a server: the same guard and limits, on this process's own client
        from cdp.analyst import analyst_sql
        from sinks.analyst import SqlLimitExceeded
        from sinks.sql_guard import SqlRefused

        sql = analyst_sql(settings, clients=1)
        try:
            columns, rows = sql.run(query)
        except SqlRefused as exc:
            raise SystemExit(f"cdp sql: query refused: {exc}") from exc
        except SqlLimitExceeded as exc:
            raise SystemExit(f"cdp sql: query stopped: {exc}") from exc
        finally:
            sql.close()
    sys.stdout.write(format_rows(columns, rows, fmt))
    return 0


def format_rows(columns: list[str], rows: list[list[Any]], fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str).decode() + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(columns)
        w.writerows(rows)
        return buf.getvalue()
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n({len(rows)} rows)\n"


def cmd_import(path: str, write_key: str, reject_file: str | None, phone_region: str | None) -> int:
    from cdp.importer import run_import

    settings = local_settings()
    require_kafka(settings, "cdp import")
    return run_import(settings, path, write_key, reject_file, phone_region)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cdp", description="Streaming customer data platform.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for role, role_help in ROLES.items():
        sub.add_parser(role, help=role_help)
    q = sub.add_parser("sql", help="read-only SQL")
    q.add_argument("query")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    imp = sub.add_parser("import", help="offline import of CSV or JSON Lines")
    imp.add_argument("file")
    imp.add_argument("--write-key", required=True)
    imp.add_argument("--reject-file", default=None, help="default: FILE.rejects.jsonl")
    imp.add_argument("--phone-region", help="country of the file's national phone numbers (FR); default: the source's")
    src = sub.add_parser("sources", help="sources and write keys")
    ssub = src.add_subparsers(dest="sub", required=True)
    c = ssub.add_parser("create", help="an SDK source, or a pull source (postgres, webhook, folder)")
    c.add_argument("--name", required=True)
    c.add_argument("--channel", choices=CHANNELS, help="required for SDK sources; pull sources: offline")
    c.add_argument("--kind", choices=SOURCE_KINDS, default="sdk")
    for option, option_help in SOURCE_OPTIONS.items():
        c.add_argument(f"--{option.replace('_', '-')}", help=option_help)
    ssub.add_parser("list", help="sources with state, lag, rows today and last error")
    d = ssub.add_parser("delete", help="remove a source (and a database source's connector)")
    d.add_argument("name")
    a = p.parse_args(argv)
    if a.cmd == "run":
        return cmd_serve(frozenset(ROLES) - {"run"})
    if a.cmd in ROLES:
        return cmd_serve(frozenset({a.cmd}))
    if a.cmd == "sql":
        return cmd_sql(a.query, a.format)
    if a.cmd == "import":
        return cmd_import(a.file, a.write_key, a.reject_file, a.phone_region)
    if a.cmd == "sources":
        from cdp import sources_cmd

        if a.sub == "create":
            options = {option: getattr(a, option) for option in SOURCE_OPTIONS}
            return sources_cmd.create(a.name, a.channel, a.kind, **options)
        return sources_cmd.list_sources() if a.sub == "list" else sources_cmd.delete(a.name)
    return 2


if __name__ == "__main__":
    sys.exit(main())
