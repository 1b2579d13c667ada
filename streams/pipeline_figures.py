"""The pipeline's figures for the console's Pipeline page, read from the broker: events per second per channel,
how far each stage is behind (consumer lag), how fast events are stitched, and how many events were refused.

Why from the broker and not from ``/metrics``: the Prometheus counters are per process, while the topics and
the consumer groups' committed offsets describe the whole installation (every collector, importer, pull source
and worker). A figure is taken when asked (at most once per ``min_interval_s``), and the last samples are kept,
so rates are differences between samples and nothing runs while nobody looks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from streams.topics import Topics

PARTITIONS_TTL_S = 60.0
LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]
EARLIEST = OffsetSpec.earliest()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Stage:
    """A consumer group and the topics it reads: its lag is their end offsets minus what it committed.

    A topic written in Kafka transactions (``transactional``) ends with a commit marker, an offset no consumer
    commits past: its last offset of each partition is not counted as lag."""

    name: str
    group: str
    topics: tuple[str, ...]
    transactional: frozenset[str] = frozenset()

    def behind(self, topic: str, end: int, committed: int) -> int:
        marker = 1 if topic in self.transactional and end > committed else 0
        return max(0, end - committed - marker)


def stages(topics: Topics, channels: Iterable[str]) -> list[Stage]:
    """The stages of the pipeline as the workers name their groups (streams/stitcher.py, cdp/runner.py)."""
    raw = tuple(topics.raw(c) for c in channels)
    stitched = (topics.stitched, topics.identities, topics.merges, topics.refusals)  # the stitcher's transactions
    return [
        Stage("stitching", f"{topics.prefix}-stitch", (*raw, topics.identity_ops), frozenset({topics.identity_ops})),
        Stage("sink", f"{topics.prefix}-sink", stitched, frozenset(stitched)),
    ]


@dataclass
class Sample:
    at_ms: int
    received: dict[str, int]  # channel -> events in its raw topic (end offsets)
    stitched: int  # raw events the stitching stage has committed
    lag: dict[str, int]  # stage -> records behind
    deadletters: int  # dead letters held by the topic
    rates: dict[str, float] = field(default_factory=dict)  # per second since the previous sample


class PipelineFigures:
    """Samples from the broker on demand; thread-safe (routes call :meth:`sample` from worker threads)."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        channels: Iterable[str],
        keep: int = 120,
        min_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.channels = list(channels)
        self.stages = stages(topics, self.channels)
        self.min_interval_s = min_interval_s
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._clock = clock
        self._lock = threading.Lock()
        self._admin: AdminClient | None = None
        self._meta: tuple[float, list[TopicPartition]] | None = None

    def sample(self) -> list[dict[str, Any]]:
        """The kept samples, oldest first, after taking a new one unless the last is recent."""
        with self._lock:
            now = self._clock()
            if not self.samples or now - self.samples[-1].at_ms / 1000 >= self.min_interval_s:
                self.add(self._take(now))
            return [asdict(s) for s in self.samples]

    def add(self, sample: Sample) -> None:
        """Appends a sample with its rates against the previous one; tests call it directly."""
        if self.samples:
            before = self.samples[-1]
            seconds = max((sample.at_ms - before.at_ms) / 1000, 1e-3)
            for channel, count in sample.received.items():
                sample.rates[channel] = max(0, count - before.received.get(channel, count)) / seconds
            sample.rates["stitched"] = max(0, sample.stitched - before.stitched) / seconds
        self.samples.append(sample)

    def _take(self, now: float) -> Sample:
        """All requests to the broker are sent before any answer is waited for: one sample costs about one round
        trip, not five. The partitions are looked up once a minute."""
        admin = self._admin = self._admin or AdminClient({"bootstrap.servers": self.bootstrap})
        partitions = self._partitions(admin, now)
        dead = [tp for tp in partitions if tp.topic == self.topics.deadletter]
        ends_asked = _ask_offsets(admin, partitions, LATEST)
        starts_asked = _ask_offsets(admin, dead, EARLIEST)
        committed_asked = {
            s.name: admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(s.group)], request_timeout=10)[
                s.group
            ]
            for s in self.stages
        }
        ends, starts = _offsets(ends_asked), _offsets(starts_asked)
        lag: dict[str, int] = {}
        stitched = 0
        raw = {self.topics.raw(c) for c in self.channels}
        for stage in self.stages:
            committed = _committed(committed_asked[stage.name])
            behind = 0
            for (topic, partition), end in ends.items():
                if topic in stage.topics:
                    done = committed.get((topic, partition), 0)
                    behind += stage.behind(topic, end, done)
                    if stage is self.stages[0] and topic in raw:
                        stitched += done
            lag[stage.name] = behind
        return Sample(
            at_ms=int(now * 1000),
            received={c: sum(o for (t, _), o in ends.items() if t == self.topics.raw(c)) for c in self.channels},
            stitched=stitched,
            lag=lag,
            deadletters=sum(o - starts.get(k, 0) for k, o in ends.items() if k[0] == self.topics.deadletter),
        )

    def _partitions(self, admin: AdminClient, now: float) -> list[TopicPartition]:
        if self._meta is None or now - self._meta[0] > PARTITIONS_TTL_S:
            meta = admin.list_topics(timeout=10).topics
            wanted = {self.topics.raw(c) for c in self.channels} | {self.topics.deadletter}
            wanted |= {t for s in self.stages for t in s.topics}
            found = [TopicPartition(t, p) for t in sorted(wanted) if t in meta for p in meta[t].partitions]
            self._meta = (now, found)
        return self._meta[1]


def _ask_offsets(admin: AdminClient, partitions: list[TopicPartition], spec: Any) -> dict[TopicPartition, Future[Any]]:
    return admin.list_offsets({tp: spec for tp in partitions}, request_timeout=10) if partitions else {}


def _offsets(asked: dict[TopicPartition, Future[Any]]) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): int(f.result().offset) for tp, f in asked.items()}


def _committed(asked: Future[Any]) -> dict[tuple[str, int], int]:
    """A group's committed offsets; none (a group that never committed, or a broker that does not know it)."""
    try:
        result = asked.result()
    except Exception:
        return {}
    return {(tp.topic, tp.partition): int(tp.offset) for tp in result.topic_partitions or [] if tp.offset >= 0}
