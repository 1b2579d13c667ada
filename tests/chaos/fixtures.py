"""What every chaos run shares: its scale, the SDK-like load, the timeline of what was injected, and the check
that the output set is the input set: read from ClickHouse, every event answered 200 is stored once, with a
profile (one per person), counted once on the DMP side, and nothing else is stored.

Kafka's own system tests are the template (PITFALLS.md, "nothing lost, nothing doubled"): seed N unique ids,
bounce brokers and clients while they flow, compare the output set with the input set.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.sdk import LoadReport, SdkLoad, journey_event
from tests.e2e.fixtures import group_members
from tests.support.service import CdpProcess


@dataclass(frozen=True)
class Scale:
    """How big a run is: ``make chaos`` runs every run in full, ``make test`` two of them short."""

    name: str
    events: int  # unique events seeded per run
    rate: float  # offered events/s
    down_s: float  # how long a killed broker or worker stays down
    clickhouse_outage_s: float
    settle_s: float  # the longest wait, after the last answer, for everything to be stored and stitched
    broker_kills: int  # brokers of the cluster killed one after the other

    @property
    def full(self) -> bool:
        return self.name == "full"


SHORT = Scale("short", events=2_000, rate=150.0, down_s=5.0, clickhouse_outage_s=10.0, settle_s=180.0, broker_kills=1)
FULL = Scale("full", events=20_000, rate=350.0, down_s=8.0, clickhouse_outage_s=30.0, settle_s=300.0, broker_kills=2)


STALL_WINDOW_S = 30.0  # after a fault, how long the client's stall is looked for


def scale_from_env() -> Scale:
    return FULL if os.environ.get("CHAOS") == "full" else SHORT


@dataclass
class Counts:
    """What ClickHouse holds for one run's events."""

    view: int = 0  # rows of cdp.events
    view_ids: int = 0  # distinct messageIds in cdp.events
    store_rows: int = 0  # rows of cdp.events_store, before the merges collapse redeliveries
    store_ids: int = 0
    without_profile: int = 0
    people: int = 0  # cookies seen in cdp.events
    split_people: int = 0  # cookies whose events show more than one current profile
    profiles: int = 0  # distinct current profiles of the run's events
    anonymous_profiles: int = 0  # cookies with a DMP profile
    anonymous_off: int = 0  # cookies whose DMP event count differs from their events in cdp.events

    def settled(self, accepted: int, people: int) -> bool:
        return (
            self.view == accepted
            and self.without_profile == 0
            and self.split_people == 0
            and self.profiles == people
            and self.anonymous_profiles == people
            and self.anonymous_off == 0
        )

    def line(self) -> str:
        return (
            f"events view {self.view:,} rows ({self.view_ids:,} ids); events_store {self.store_rows:,} rows "
            f"({self.store_ids:,} ids; redelivered rows await a merge); without a profile {self.without_profile:,}; "
            f"people {self.people:,} on {self.profiles:,} profiles, split {self.split_people:,}; "
            f"anonymous profiles {self.anonymous_profiles:,}, counts off {self.anonymous_off:,}"
        )


def read_counts(service: CdpProcess, tag: str) -> Counts:
    mine = f"startsWith(message_id, '{tag}-')"
    view, view_ids, without = service.sql(
        f"SELECT count(), uniqExact(message_id), countIf(profile_id = '') FROM cdp.events WHERE {mine}"
    )[0]
    store_rows, store_ids = service.sql(f"SELECT count(), uniqExact(message_id) FROM cdp.events_store WHERE {mine}")[0]
    people, split, profiles = service.sql(
        "SELECT count(), countIf(length(p) != 1), length(arrayDistinct(arrayFlatten(groupArray(p)))) FROM "
        f"(SELECT anonymous_id, groupUniqArray(profile_id) AS p FROM cdp.events_with_profile WHERE {mine} "
        "GROUP BY anonymous_id)"
    )[0]
    anonymous, off = service.sql(
        "SELECT countIf(a.id_value != ''), countIf(a.events != e.n) FROM "
        f"(SELECT anonymous_id, count() AS n FROM cdp.events WHERE {mine} GROUP BY anonymous_id) AS e "
        "LEFT JOIN (SELECT id_value, events FROM cdp.anonymous_profiles "
        f"WHERE id_type = 'anonymous_id' AND startsWith(id_value, '{tag}-')) AS a ON a.id_value = e.anonymous_id"
    )[0]
    return Counts(view, view_ids, store_rows, store_ids, without, people, split, profiles, anonymous, off)


@dataclass
class ChaosRun:
    """One run: the load, what was injected when, and the final check.

    The load goes on until the run ends it (``end_load``), so every fault falls under load however long the
    processes take to come back on a busy machine; it has sent at least ``scale.events`` by then."""

    name: str
    scale: Scale
    service: CdpProcess
    tag: str
    load: SdkLoad | None = None
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (seconds after the load's start, line)
    last_fault_accepted: int = 0

    def start_load(self) -> SdkLoad:
        key = self.service.write_keys["online"]
        events = functools.partial(journey_event, self.tag)
        cap = self.scale.events * 50  # never reached: the run ends the load
        self.load = SdkLoad(self.service.url, key, cap, events, self.scale.rate).start()
        return self.load

    def at_progress(self, share: float) -> None:
        """Wait until ``share`` of ``scale.events`` have been accepted."""
        assert self.load is not None
        self.load.wait_accepted(int(self.scale.events * share), timeout=self.scale.events / self.scale.rate * 4 + 300)

    def injected(self, what: str) -> None:
        assert self.load is not None
        assert self.load.running and not self.load.draining, f"{what}: the load has ended"
        elapsed = time.monotonic() - self.load.report.started_at
        self.last_fault_accepted = self.load.accepted
        self.timeline.append((elapsed, f"{elapsed:6.1f} s  ({self.load.accepted:>6,} accepted)  {what}"))
        print(f"[chaos {self.name}] {elapsed:6.1f} s: {what}", flush=True)

    def end_load(self) -> None:
        """Once ``scale.events`` are accepted, and the load has gone on for ``down_s`` after the last fault, send
        nothing new and let the batches in hand be accepted."""
        assert self.load is not None
        after = self.last_fault_accepted + int(self.scale.rate * self.scale.down_s)
        self.at_progress(max(1.0, after / self.scale.events))
        self.load.drain()

    def finish(self) -> tuple[LoadReport, Counts]:
        """End the load, let the pipeline settle; assert the output set equals the input set."""
        assert self.load is not None
        self.end_load()
        report = self.load.wait(timeout=600)
        assert not report.refused, report.refused[:5]
        assert report.gave_up == 0 and len(report.accepted) == report.sent >= self.scale.events, report.summary()
        people = len({journey_event(self.tag, int(mid.rsplit("-", 1)[1]))["anonymousId"] for mid in report.accepted})
        settled_at = time.monotonic()
        counts = read_counts(self.service, self.tag)
        while not counts.settled(len(report.accepted), people) and time.monotonic() - settled_at < self.scale.settle_s:
            time.sleep(1.0)
            counts = read_counts(self.service, self.tag)
        settle = time.monotonic() - settled_at
        mine = f"SELECT message_id FROM cdp.events WHERE startsWith(message_id, '{self.tag}-')"
        stored = {r[0] for r in self.service.sql(mine)}
        missing, extra = report.accepted - stored, stored - report.accepted
        lines = [
            f"chaos run {self.name} ({self.scale.name}: {self.scale.events:,}+ events at {self.scale.rate:,.0f}/s)",
            *(
                f"  injected at {entry}; longest stall in the {STALL_WINDOW_S:.0f} s after: "
                f"{report.stall_after(at, STALL_WINDOW_S):.2f} s"
                for at, entry in self.timeline
            ),
            f"  load: {report.summary()}",
            f"  stored: {counts.line()}",
            f"  lost {len(missing):,}, doubled {counts.view - counts.view_ids:,}, never accepted but stored "
            f"{len(extra):,}; settled {settle:.1f} s after the last answer",
        ]
        print("\n".join(lines), flush=True)
        if missing or extra:
            own = service_lines(self.service)
            print(f"  the service's own lines, from {self.service.log_path}:\n{own}", flush=True)
        assert not missing, f"{len(missing)} accepted events not stored, e.g. {sorted(missing)[:5]}"
        assert not extra, f"{len(extra)} stored events never accepted, e.g. {sorted(extra)[:5]}"
        assert counts.view == counts.view_ids == len(report.accepted), counts.line()
        assert counts.settled(len(report.accepted), people), counts.line()
        return report, counts

    def abandon(self) -> None:
        if self.load is not None:
            self.load.stop()


def service_lines(service: CdpProcess, last: int = 60) -> str:
    """The service's log without the Kafka clients' own reconnect noise: what to read when a run failed."""
    own = [line for line in service.output().splitlines() if not line.startswith("%") and "aiokafka" not in line]
    return "\n".join(own[-last:])


def cdp_table_folders(service: CdpProcess) -> list[Path]:
    """The data folders of the tables of the `cdp` database in the service's embedded store."""
    rows = service.sql("SELECT data_paths FROM system.tables WHERE database = 'cdp'")
    return sorted({Path(p) for (paths,) in rows for p in paths})


@contextlib.contextmanager
def writes_refused(folders: list[Path]) -> Iterator[None]:
    """ClickHouse refuses every write to these tables while inside: their data folders are made immutable
    (`chattr +i`, which stops root too), so each insert fails creating its part, as on a store that has gone
    away, while the process and its reads stay up. Always undone on the way out."""
    subprocess.run(["chattr", "+i", *map(str, folders)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, folders)], check=True)


def stitch_members(bootstrap: str, topic_prefix: str, want: int, timeout: float = 90.0) -> int:
    """Stitch workers that own partitions, once there are ``want`` of them (else the last count seen)."""
    return group_members(bootstrap, f"{topic_prefix}-stitch", want, timeout)
