"""`cdp sources create|list|delete`: sources and their write keys, and the pull sources' set-up.

Every kind prints the new write key alone on the last line (scripts read it there). A pull source is checked
before anything is stored: its mapping is parsed, and a database source's connector configuration is
validated by Kafka Connect (which connects to the database to do it), so a wrong DSN or table is an error
here and not a failing worker later.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

from cdp.local_stack import local_settings, require_kafka
from schemas.consent import parse_consent_default
from schemas.settings import Settings

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _fail(message: str) -> SystemExit:
    return SystemExit(f"cdp sources create: {message}")


def _registry(settings: Settings) -> Any:
    from streams.sources import SourceRegistry
    from streams.topics import ensure_topics, topics_for

    ensure_topics(settings)
    return SourceRegistry(settings.kafka_bootstrap, topics_for(settings).sources).start()


def _postgres_config(settings: Settings, name: str, dsn_text: str, table: str, mapping: str) -> dict[str, Any]:
    from schemas.cdc import TableMapping
    from schemas.mapping import MappingError
    from schemas.mappings import mapping_text
    from streams.connect import (
        ConnectClient,
        ConnectError,
        Dsn,
        check_table,
        connector_config,
        connector_name,
    )
    from streams.topics import ensure_topic, topics_for

    try:
        dsn = Dsn.parse(dsn_text)
        check_table(table)
        text = mapping_text(mapping)
        parsed = TableMapping.from_yaml(text)
    except (ValueError, FileNotFoundError, MappingError) as exc:
        raise _fail(str(exc)) from None
    topics = topics_for(settings)
    config = connector_config(
        topic_prefix=settings.topic_prefix,
        cdc_prefix=topics.cdc_prefix(name),
        source=name,
        dsn=dsn,
        table=table,
        replica_identity_full=parsed.replica_identity_full,
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
    )
    topic = f"{topics.cdc_prefix(name)}.{table}"
    connector = connector_name(settings.topic_prefix, name)
    client = ConnectClient(settings.connect_url, timeout=120)
    try:
        errors = client.validate({**config, "name": connector})
        if errors:
            raise _fail("Kafka Connect refused the connector:\n  " + "\n  ".join(errors))
        ensure_topic(settings, topic, compacted=True)
        client.put(connector, config)
    except ConnectError as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()
    return {
        "dsn": dsn.redacted,
        "table": table,
        "mapping": mapping,
        "mapping_yaml": text,
        "connector": connector,
        "topic": topic,
    }


def _webhook_config(mapping: str, secret_file: str | None) -> dict[str, Any]:
    from schemas.mapping import MappingError
    from schemas.mappings import mapping_text
    from schemas.webhooks import WebhookMapping

    try:
        text = mapping_text(mapping)
        WebhookMapping.from_yaml(text)
    except (FileNotFoundError, MappingError) as exc:
        raise _fail(str(exc)) from None
    if secret_file:
        secret = Path(secret_file).read_text(encoding="utf-8").strip()
        if len(secret) < 16:
            raise _fail("the secret in --secret-file is shorter than 16 characters")
    else:
        secret = f"whsec_{secrets.token_urlsafe(32)}"
    return {"mapping": mapping, "mapping_yaml": text, "secret": secret}


def _settings(command: str) -> Settings:
    """The settings of the running local stack (cdp/local_stack.py), with a broker that answers."""
    settings = local_settings()
    require_kafka(settings, f"cdp sources {command}")
    return settings


def create(
    name: str,
    channel: str | None,
    kind: str,
    *,
    dsn: str | None = None,
    table: str | None = None,
    mapping: str | None = None,
    path: str | None = None,
    secret_file: str | None = None,
    phone_region: str | None = None,
    consent_default: str | None = None,
) -> int:
    from streams.producer import AsyncProducer
    from streams.sources import new_source, publish_source
    from streams.topics import topics_for

    settings = _settings("create")
    if kind == "sdk" and channel is None:
        raise _fail("--channel is required for SDK sources")
    config: dict[str, Any] = {}
    if kind != "sdk":
        if not _NAME.match(name):
            raise _fail("the name of a pull source is lower-case letters, digits, - and _ (it names topics and URLs)")
        registry = _registry(settings)
        taken = registry.named(name)
        registry.stop()
        if taken is not None:
            raise _fail(f"a source named {name!r} exists already")
    if kind == "postgres":
        if not (dsn and table and mapping):
            raise _fail("--kind postgres needs --dsn, --table and --mapping")
        config = _postgres_config(settings, name, dsn, table, mapping)
    elif kind == "webhook":
        config = _webhook_config(mapping or "", secret_file)
    elif kind == "folder":
        if not path:
            raise _fail("--kind folder needs --path")
        config = {"path": str(Path(path).resolve())}
    if phone_region:
        from identity.normalise import phone_region as region_code

        try:
            config["phone_region"] = region_code(phone_region)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    if consent_default:
        try:
            config["consent_default"] = parse_consent_default(consent_default)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    try:
        source = new_source(name, channel or "offline", kind, config)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    producer = AsyncProducer(settings.kafka_bootstrap)
    publish_source(producer, topics_for(settings).sources, source)
    producer.close()
    print(f"created {kind} source {source.name!r} on channel {source.channel}")
    if kind == "postgres":
        print(f"  connector {config['connector']} at {settings.connect_url}: {config['dsn']} table {config['table']}")
    elif kind == "webhook":
        print(f"  URL    : http://{settings.http_host}:{settings.http_port}/v1/webhooks/{source.name}")
        if not secret_file:
            print(f"  secret : {config['secret']}   (give it to the sender; shown once)")
    elif kind == "folder":
        print(f"  watching {config['path']} (imported files go to done/ or failed/)")
    print("write key:")
    print(source.write_key)
    return 0


def list_sources() -> int:
    from streams.source_status import StatusBoard, summarise, today
    from streams.topics import topics_for

    settings = _settings("list")
    registry = _registry(settings)
    board = StatusBoard(settings.kafka_bootstrap, topics_for(settings).sources_status).start()
    records = board.records()
    board.stop()
    now_ms, day = int(time.time() * 1000), today()
    rows = [["kind", "channel", "name", "state", "lag", "rows today", "last error", "write key"]]
    for s in registry.all():
        st = summarise(records, s.name, now_ms, day) if s.kind != "sdk" else None
        state = st.state if st else ("-" if s.kind == "sdk" else "not started")
        rows.append(
            [
                s.kind,
                s.channel,
                s.name,
                state,
                "" if st is None or st.lag is None else str(st.lag),
                "" if st is None else str(st.rows_today),
                "" if st is None or not st.last_error else st.last_error[:80],
                s.write_key,
            ]
        )
    registry.stop()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def delete(name: str) -> int:
    """Removes a source (tombstone) and, for a database source, its connector. The replication slot stays in
    the database until dropped there (`SELECT pg_drop_replication_slot('SLOT')`): it holds the changes a
    re-created source would resume from."""
    from streams.connect import ConnectClient, ConnectError
    from streams.producer import AsyncProducer
    from streams.topics import topics_for

    settings = _settings("delete")
    registry = _registry(settings)
    source = registry.named(name)
    registry.stop()
    if source is None:
        raise SystemExit(f"cdp sources delete: no source named {name!r}")
    if source.kind == "postgres":
        client = ConnectClient(settings.connect_url)
        try:
            client.delete(source.config["connector"])
        except ConnectError as exc:
            raise SystemExit(f"cdp sources delete: {exc}") from None
        finally:
            client.close()
    producer = AsyncProducer(settings.kafka_bootstrap)
    producer.send_sync([(topics_for(settings).sources, source.write_key.encode(), None)])
    producer.close()
    print(f"deleted {source.kind} source {name!r}")
    return 0
