"""Offline events into the raw topics: the one path that `cdp import`, folder drops, database change capture
and webhooks share, so an event from any of them is validated, normalised and enriched exactly as the
collector does it.

Validation is the offline one (`schemas.validation.offline_invalid_reason`): an e-mail, phone, loyalty or CRM
id may stand in for userId/anonymousId, because CRM rows, orders and payments rarely carry a cookie or a
login id. What fails is never dropped in silence: the caller writes it to a rejects file (files) or to the
dead-letter topic (streams) with the reason. An event of a suppressed person (the privacy ledger) is left out and
counted (``cdp_events_suppressed_total``), never written anywhere, not even to a rejects file.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from identity.extract import normalise_identifier_traits
from identity.normalise import normalise_phone, to_text
from identity.rules import IdentityRules
from schemas.enrich import enrich
from schemas.errors import from_validation_error
from schemas.offline import RowError, row_event
from schemas.segment import SegmentEvent
from schemas.validation import offline_invalid_reason
from streams.keys import raw_event_record
from streams.metrics import IMPORT_ROWS
from streams.privacy import PrivacyLedger, Produced, screened
from streams.producer import CHECKED_HEADER, AsyncProducer
from streams.sources import Source, consent_default

CHUNK = 2000
Record = tuple[str, bytes | None, bytes]


class UnreadableFile(ValueError):
    """A file that cannot be read at all (not UTF-8): nothing of it is imported."""


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
                    raise UnreadableFile(
                        f"{path} is not UTF-8 text (after line {reader.line_num}: {exc.reason}); "
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
    digest = hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return f"import-{digest}"


def source_phone_region(source: Source, rules: IdentityRules, override: str | None = None) -> str:
    """The region national phone numbers of this input are read in: the import's own (``cdp import
    --phone-region``), else the source's (``cdp sources create --phone-region``), else the identity rules'."""
    return override or source.config.get("phone_region") or rules.default_phone_region


def phones_to_e164(event: dict[str, Any], region: str, rules: IdentityRules) -> str | None:
    """Rewrite the event's ``traits.phone`` / ``context.traits.phone`` to E.164, reading national numbers in
    ``region``, so the stitcher (whose rules know one region for all inputs) keys them whatever the source's
    country. The reason when a phone cannot be read: a till receipt's ``06 12 34 56 78`` in the wrong region
    would otherwise be accepted and attach to no one. Placeholders (``n/a``) are left to the blocklist."""
    context = event.get("context")
    for path, traits in (("traits", event.get("traits")), ("context.traits", context and context.get("traits"))):
        if not isinstance(traits, dict) or traits.get("phone") is None:
            continue
        text = to_text(traits["phone"])
        if text is None or rules.is_blocked(text):
            continue
        e164 = normalise_phone(text, region)
        if e164 is None:
            return (
                f"{path}.phone: {text!r} is not a phone number in region {region}; give it with its country code"
                " (+33 6 ...) or set the region (cdp sources create --phone-region, cdp import --phone-region)"
            )
        traits["phone"] = e164
    return None


def prepare(
    event: Any, source: Source, received_at: datetime, rules: IdentityRules, phone_region: str | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(enriched event, None) or (None, reason). As the collector does: the validated, normalised event is
    stored ("Track" -> "track", numeric ids -> strings), not the raw one; a missing messageId is derived
    from the content, so the same input twice stores one event. Phones become E.164 (:func:`phones_to_e164`),
    national ones read in the import's or the source's region."""
    error = offline_invalid_reason(event)
    if error is not None:
        return None, error
    try:
        valid = SegmentEvent.model_validate(event).to_segment()
    except ValidationError as exc:  # not expected after offline_invalid_reason; never a crash
        return None, "; ".join(str(e) for e in from_validation_error(exc))
    if not valid.get("messageId"):
        valid["messageId"] = content_message_id(valid)
    error = phones_to_e164(valid, source_phone_region(source, rules, phone_region), rules)
    if error is not None:
        return None, error
    normalise_identifier_traits(valid, rules)
    enriched = enrich(
        valid,
        received_at=received_at,
        client_ip=None,
        channel=source.channel,
        source_id=source.name,
        consent_default=consent_default(source),
    )
    return enriched, None


def deadletter_record(topic: str, source: Source, reason: str, original: Any, received_at: datetime) -> Record:
    """The collector's dead-letter shape, so one consumer reads the refusals of every path."""
    record = {
        "reason": reason,
        "source": source.name,
        "channel": source.channel,
        "received_at": received_at.isoformat(),
        "event": original,
    }
    return topic, None, orjson.dumps(record, default=str)


@dataclass
class ImportResult:
    accepted: int = 0
    rejected: int = 0
    suppressed: int = 0


def suppressed_records(
    ledger: PrivacyLedger | None, event: dict[str, Any], source: Source, rules: IdentityRules
) -> list[Produced] | None:
    """None for an event to send; for one of a suppressed person, the ledger records of the identifiers that join
    the suppression with it, to send instead (streams/privacy.py)."""
    if ledger is None or not ledger.suppressing_any:
        return None
    return screened(ledger, event, rules, source.channel)


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f) - (1 if path.suffix.lower() == ".csv" else 0)


def import_file(
    path: Path,
    source: Source,
    topic: str,
    producer: AsyncProducer,
    rejects_path: Path,
    rules: IdentityRules,
    on_row: Callable[[], None] | None = None,
    phone_region: str | None = None,
    ledger: PrivacyLedger | None = None,
) -> ImportResult:
    """Every row of a CSV or JSON Lines file into ``topic``; rejected rows into ``rejects_path`` (JSON Lines:
    line number, reason, row; removed when there are none). Returns once the broker acknowledged every event
    (``send_sync`` raises otherwise). UnreadableFile when the file is not text. ``phone_region`` reads the
    file's national phone numbers (else the source's region). With ``ledger``, a suppressed person's rows are
    left out (counted in ``suppressed``)."""
    result = ImportResult()
    chunk: list[Produced] = []
    is_csv = path.suffix.lower() == ".csv"
    received = datetime.now(UTC)
    with rejects_path.open("wb") as rejects:
        for line_no, row, error in read_rows(path):
            if on_row is not None:
                on_row()
            event = None
            if error is None and row is not None:
                try:
                    event, error = prepare(row_event(row) if is_csv else row, source, received, rules, phone_region)
                except RowError as exc:
                    error = str(exc)
            if error is not None or event is None:
                result.rejected += 1
                rejects.write(orjson.dumps({"line": line_no, "reason": error, "row": row}) + b"\n")
                continue
            joined = suppressed_records(ledger, event, source, rules)
            if joined is not None:
                result.suppressed += 1
                chunk += joined
                continue
            chunk.append(raw_event_record(topic, event, rules))
            result.accepted += 1
            if len(chunk) >= CHUNK:
                producer.send_sync(chunk, headers=[CHECKED_HEADER])
                chunk = []
    if chunk:
        producer.send_sync(chunk, headers=[CHECKED_HEADER])
    IMPORT_ROWS.labels("accepted").inc(result.accepted)
    IMPORT_ROWS.labels("rejected").inc(result.rejected)
    IMPORT_ROWS.labels("suppressed").inc(result.suppressed)
    if not result.rejected:
        rejects_path.unlink(missing_ok=True)
    return result
