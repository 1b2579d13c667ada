"""`cdp import FILE --write-key KEY`: offline CSV / JSON Lines through the same validation and Kafka path as
the collector (streams/ingest.py, which folder drops share). Rejected rows go to a reject file (JSON Lines:
line number, reason, row); nothing is silently dropped, except the rows of suppressed people (the privacy
ledger, as at the collector), which are left out and counted. Screening needs the deployment's privacy key
(CDP_PRIVACY_KEY, or the one in CDP_DATA_DIR); without it the import refuses to run while anyone is suppressed.
Events are produced in chunks and the producer is flushed and checked before the command succeeds.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from tqdm import tqdm

from schemas.settings import Settings


def run_import(
    settings: Settings, file: str, write_key: str, reject_file: str | None, phone_region: str | None = None
) -> int:
    from identity.normalise import phone_region as region_code
    from identity.rules import IdentityRules
    from identity.subject_hash import SubjectHasher
    from streams.ingest import UnreadableFile, count_lines, import_file
    from streams.privacy import PrivacyLedger
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
    key = settings.known_privacy_key()
    # Without the key, a hasher that matches nobody: fine while nobody is suppressed, refused otherwise.
    ledger = PrivacyLedger(settings.kafka_bootstrap, topics.privacy_ledger, SubjectHasher(key or secrets.token_hex()))
    ledger.start()
    ledger.stop()  # the ledger as it is now: the import's own joins are applied to it as they happen
    if key is None and ledger.suppressing_any:
        raise SystemExit(
            "cdp import: people are suppressed (POST /v1/regulations) and this command has no privacy key: set "
            "CDP_PRIVACY_KEY to the deployment's (or CDP_DATA_DIR to the running stack's folder)"
        )
    rejects_path = Path(reject_file or f"{file}.rejects.jsonl")
    rules = IdentityRules.load(str(settings.identity_rules) if settings.identity_rules else None)
    producer = AsyncProducer(settings.kafka_bootstrap)
    try:
        with tqdm(total=count_lines(path), unit="rows", desc=f"import {path.name}", disable=None) as bar:
            result = import_file(
                path, source, topics.raw(source.channel), producer, rejects_path, rules, bar.update, region, ledger
            )
    except UnreadableFile as exc:
        raise SystemExit(f"cdp import: {exc}") from None
    finally:
        producer.close()
    print(
        f"imported {result.accepted} events into {source.channel} ({source.name}); {result.rejected} rejected"
        + (f", see {rejects_path}" if result.rejected else "")
        + (f"; {result.suppressed} of suppressed people left out" if result.suppressed else "")
    )
    return 0 if result.accepted or not result.rejected else 1
