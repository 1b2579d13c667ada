"""How long the stores keep what they keep, and the one part of it a TTL cannot see: who was identified later.

The TTL clauses are in ``sinks/migrations/018_retention.sql``, rendered from :class:`Retention` (the settings) and
applied again when a setting changes. Raw events of never-identified identifiers are the hard case: a TTL reads
only its row, so each event row carries ``anonymous`` (its own identifiers are all anonymous ones), set by the
engine at insert. A cookie that is identified later (it logs in, a CRM row names its device) is no longer
anonymous, and neither is its history: :func:`mark_identified` clears the flag of the events whose identifier
ever belonged to a profile with an identifying identifier (any version of the identities store, so a later
split does not make a person anonymous again). It is one mutation over the table, reading the identities
store through a subquery, so no identifier's value is written into the mutation's text (shared/research/
privacy.md). :class:`IdentifiedMarker` runs it on a schedule in the worker that writes ClickHouse; a cookie
identified within one interval of its events' expiry may lose those events.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from schemas.settings import Settings
from sinks.clickhouse import ClickHouse
from sinks.erasure import MUTATION_SETTINGS

__all__ = ["ANONYMOUS_TYPES", "IdentifiedMarker", "Retention", "mark_identified"]

log = logging.getLogger("cdp.retention")
# Identifier types that name a browser or a device, not a person (017's `anonymous` default lists the same).
ANONYMOUS_TYPES = ("anonymous_id", "device_id", "advertising_id")


@dataclass(frozen=True)
class Retention:
    """Days each kind of data is kept; the placeholders of the migrations and views (sinks/migrate.py)."""

    anonymous_profiles_days: int = 90
    anonymous_events_days: int = 90
    refusals_days: int = 30
    audience_history_days: int = 365

    @classmethod
    def of(cls, settings: Settings) -> Retention:
        return cls(
            settings.anonymous_ttl_days,
            settings.anonymous_events_ttl_days or settings.anonymous_ttl_days,
            settings.refusals_ttl_days,
            settings.audience_history_ttl_days,
        )

    def placeholders(self) -> dict[str, int]:
        return {
            "ttl_days": self.anonymous_profiles_days,
            "anonymous_events_ttl_days": self.anonymous_events_days,
            "refusals_ttl_days": self.refusals_days,
            "audience_history_ttl_days": self.audience_history_days,
        }


def mark_identified(ch: ClickHouse) -> None:
    """Clears ``anonymous`` on the events of identifiers that belong, or once belonged, to an identified profile."""
    db = ch.database
    anonymous = ", ".join(f"'{t}'" for t in ANONYMOUS_TYPES)
    identified_profiles = f"SELECT profile_id FROM {db}.identities_store WHERE id_type NOT IN ({anonymous})"
    identified_keys = (
        f"SELECT concat(id_type, ':', id_value) FROM {db}.identities_store "
        f"WHERE id_type IN ({anonymous}) AND profile_id IN ({identified_profiles})"
    )
    ch.command(
        f"ALTER TABLE {db}.events_store UPDATE anonymous = 0 "
        f"WHERE anonymous = 1 AND identity_key IN ({identified_keys})",
        settings=MUTATION_SETTINGS,
    )


class IdentifiedMarker(threading.Thread):
    """A part (start/stop): :func:`mark_identified` at start and every ``interval_s``, on an engine client of its
    own (a process restarted more often than the interval still marks)."""

    def __init__(self, ch: ClickHouse, interval_s: float) -> None:
        super().__init__(name="retention", daemon=True)
        self.ch, self.interval_s, self.runs = ch, interval_s, 0
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                mark_identified(self.ch)
                self.runs += 1
            except Exception:  # the next round tries again
                log.exception("marking identified events failed")
            self._stopping.wait(self.interval_s)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)
