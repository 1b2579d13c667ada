"""`cdp import FILE --write-key KEY`: offline CSV / JSON Lines through the same validation and Kafka path as
the collector (streams/ingest.py, which folder drops share). Rejected rows go to a reject file (JSON Lines:
line number, reason, row); nothing is silently dropped. Events are produced in chunks and the producer is
flushed and checked before the command succeeds.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from schemas.settings import Settings


def run_import(
    settings: Settings, file: str, write_key: str, reject_file: str | None, phone_region: str | None = None
) -> int:
    from identity.normalise import phone_region as region_code
    from identity.rules import IdentityRules
    from streams.ingest import UnreadableFile, count_lines, import_file
    from streams.producer import AsyncProducer
    from streams.sources import SourceRegistry
    from streams.topics import ensure_topics, topics_for

    path = Path(file)
    if not path.is_file():
        raise SystemExit(f"cdp import: no such file: {file}")
    try:
        region = region_code(phone_region) if phone_region else None
    except ValueError as exc:
        raise SystemExit(f"cdp import: {exc}") from None
    ensure_topics(settings)
    topics = topics_for(settings)
    registry = SourceRegistry(settings.kafka_bootstrap, topics.sources).start()
    source = registry.get(write_key)
    registry.stop()
    if source is None:
        raise SystemExit("cdp import: unknown write key")
    rejects_path = Path(reject_file or f"{file}.rejects.jsonl")
    rules = IdentityRules.load(str(settings.identity_rules) if settings.identity_rules else None)
    producer = AsyncProducer(settings.kafka_bootstrap)
    try:
        with tqdm(total=count_lines(path), unit="rows", desc=f"import {path.name}", disable=None) as bar:
            result = import_file(
                path, source, topics.raw(source.channel), producer, rejects_path, rules, bar.update, region
            )
    except UnreadableFile as exc:
        raise SystemExit(f"cdp import: {exc}") from None
    finally:
        producer.close()
    print(
        f"imported {result.accepted} events into {source.channel} ({source.name}); {result.rejected} rejected"
        + (f", see {rejects_path}" if result.rejected else "")
    )
    return 0 if result.accepted or not result.rejected else 1
