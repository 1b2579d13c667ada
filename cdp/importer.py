"""`cdp import FILE --write-key KEY`: offline CSV / JSON Lines through the same validation and Kafka path as
the collector. Rejected rows go to a reject file (JSON Lines: line number, reason, row); nothing is silently
dropped. Events are produced in chunks and the producer is flushed and checked before the command succeeds.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from schemas.settings import Settings

CHUNK = 2000


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, row, parse error) for each data line; CSV by extension .csv, JSON Lines otherwise."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # e.g. a field over csv's size limit: reject the row, keep going
                    # The reader raises before counting the line it failed on.
                    yield reader.line_num + 1, None, f"line: invalid CSV ({exc})"
                    continue
                except UnicodeDecodeError as exc:
                    raise SystemExit(
                        f"cdp import: {path} is not UTF-8 text (after line {reader.line_num}: {exc.reason}); "
                        "convert it first, e.g. iconv -f latin1 -t utf-8"
                    ) from None
                yield reader.line_num, row, None
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield n, None, f"line: invalid JSON ({exc})"
                continue
            if not isinstance(value, dict):
                yield n, None, "line: not a JSON object"
                continue
            yield n, value, None


def content_message_id(event: dict[str, Any]) -> str:
    """A messageId derived from the event's content, for rows that carry none: re-imports deduplicate."""
    digest = hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"import-{digest[:32]}"


def run_import(settings: Settings, file: str, write_key: str, reject_file: str | None) -> int:
    from pydantic import ValidationError

    from api.enrich import enrich
    from identity.rules import IdentityRules
    from schemas.errors import from_validation_error
    from schemas.offline import RowError, row_event
    from schemas.segment import SegmentEvent
    from schemas.validation import offline_invalid_reason
    from streams.keys import raw_event_key
    from streams.producer import CHECKED_HEADER, AsyncProducer
    from streams.sources import SourceRegistry
    from streams.topics import ensure_topics, topics_for

    path = Path(file)
    if not path.is_file():
        raise SystemExit(f"cdp import: no such file: {file}")
    rules = IdentityRules.load(str(settings.identity_rules) if settings.identity_rules else None)
    ensure_topics(settings)
    topics = topics_for(settings)
    registry = SourceRegistry(settings.kafka_bootstrap, topics.sources).start()
    source = registry.get(write_key)
    registry.stop()
    if source is None:
        raise SystemExit("cdp import: unknown write key")
    topic = topics.raw(source.channel)
    rejects_path = Path(reject_file or f"{file}.rejects.jsonl")
    producer = AsyncProducer(settings.kafka_bootstrap)
    accepted = rejected = 0
    chunk: list[tuple[str, bytes | None, bytes]] = []
    is_csv = path.suffix.lower() == ".csv"
    with path.open("rb") as f:
        total_lines = sum(1 for _ in f) - (1 if is_csv else 0)
    with (
        rejects_path.open("wb") as rejects,
        tqdm(total=total_lines, unit="rows", desc=f"import {path.name}", disable=None) as bar,
    ):
        for line_no, row, error in read_rows(path):
            bar.update(1)
            event = None
            if error is None and row is not None:
                try:
                    event = row_event(row) if is_csv else row
                    error = offline_invalid_reason(event)
                    if error is None:
                        # As the collector does: store the validated, normalised event ("Track" -> "track",
                        # numeric ids -> strings), not the raw row.
                        event = SegmentEvent.model_validate(event).to_segment()
                except RowError as exc:
                    error = str(exc)
                except ValidationError as exc:  # not expected after offline_invalid_reason; never a crash
                    error = "; ".join(str(e) for e in from_validation_error(exc))
            if error is not None or event is None:
                rejected += 1
                rejects.write(orjson.dumps({"line": line_no, "reason": error, "row": row}) + b"\n")
                continue
            if not event.get("messageId"):
                # Deterministic, so importing the same file twice (e.g. after a failed run) stores each row once.
                event["messageId"] = content_message_id(event)
            enriched = enrich(
                event, received_at=datetime.now(UTC), client_ip=None, channel=source.channel, source_id=source.name
            )
            chunk.append((topic, raw_event_key(enriched, rules), orjson.dumps(enriched)))
            accepted += 1
            if len(chunk) >= CHUNK:
                producer.send_sync(chunk, headers=[CHECKED_HEADER])
                chunk = []
        if chunk:
            producer.send_sync(chunk, headers=[CHECKED_HEADER])
    producer.close()
    print(
        f"imported {accepted} events into {source.channel} ({source.name}); {rejected} rejected"
        + (f", see {rejects_path}" if rejected else "")
    )
    if not rejected:
        rejects_path.unlink(missing_ok=True)
    return 0 if accepted or not rejected else 1
