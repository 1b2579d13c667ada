"""The stitch worker's data plane: identity stitching in batches, with confluent-kafka, inside the Faust worker.

Faust keeps what it is good at: the worker process, the consumer group that spreads the identity graph's
partitions over the workers, and its rebalance protocol (streams.app follows the assignment of a topic that
carries no records, ``Topics.identity_owners``). Per-record work does not go through Faust: its per-record and
per-table-write cost would cap the whole pipeline, so this module consumes and produces in batches with
confluent-kafka, in a thread of its own, following Faust's assignment. The worker assigned partition p owns
partition p of the raw channel topics, of the identity-messages topic and of the node changelog; what one batch
does is ``streams.stitch_batch``.

Crash safety (kill -9 at any point)
-----------------------------------
One Kafka transaction per batch holds everything the batch produces (stitched events, identity changes,
merges, refusals, dead letters, identity messages for other partitions, the changelog records of every node
state it changed) together with the offsets it consumed (``send_offsets_to_transaction``, into the workers'
consumer group). Everything downstream reads committed records only (librdkafka's ``read_committed`` default:
the sinks, the serving index, this module). The local RocksDB copy of the node states (streams.node_store) is
written only after the commit, atomically with the changelog offset it reaches. So:

* killed before the commit: the open transaction is aborted (by the restarted worker's ``init_transactions``,
  which fences its predecessor of the same ``CDP_WORKER_ID``, or by the broker after ``transaction.timeout.ms``
  when another worker takes over); nothing of the batch is visible anywhere, the consumed offsets stand where
  they were, and the batch is read and handled again from the same node states;
* killed after the commit, before the local write: the local copy is behind the changelog; a worker getting
  the partition always reads the changelog from the offset its copy reached, so it catches up.

A batch can be replayed any number of times and counts once: no link is lost, no visible event is doubled.

Pipelining: a commit waits for the broker (every record acknowledged, then the transaction markers), so it runs in
a thread of its own while the loop reads and handles the next batch. That next batch sees the node states of the
one still committing (``_Pending``), but produces nothing before that commit has succeeded; if it was aborted
instead, both batches are dropped and read again from the first one's offsets. Only committed states ever reach
the cache and the local store.

Rebalances: Faust's revocation handler waits until this loop has finished (committed or aborted) its batch and
let go of the revoked partitions, so two workers never handle one partition at once while the group's
membership holds. A worker frozen for longer than the group's session timeout (an event loop blocked for a
minute) would not hear of its eviction before its next commit; workers have distinct transactional ids, so that
is the one case the transaction does not fence.

Backlog priority: identity messages come before new raw events. They are read by a consumer of their own,
drained first into every batch, and raw events only fill the room left, so a catch-up or a big import never
starves the protocol (and an identity message never waits behind thousands of prefetched raw events): links
keep converging at a steady rate and the raw backlog waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Histogram

from identity.graph import NodeState
from identity.rules import IdentityRules
from identity.subject_hash import SubjectHasher
from schemas.settings import Settings
from streams.keys import HINT_HEADER
from streams.node_store import NodeStore
from streams.privacy import PrivacyLedger
from streams.producer import CHECKED_HEADER, producer_config
from streams.profile_scheme import install_profile_ids
from streams.stitch_batch import BatchCounts, BatchOutput, RawEvent, StitchBatch
from streams.topics import topics_for

log = logging.getLogger(__name__)

BATCH_RECORDS = 5_000  # per consume: a transaction commit costs milliseconds, so batches amortise it
POLL_S = 0.05  # longest wait for a batch to fill: bounds the latency a trickle of events sees
LOCAL_BUDGET = 200_000  # messages one batch handles among its own partitions before sending the rest on
CACHE_NODES = 50_000  # decoded node states kept in memory (two generations of this many at most)
TRANSACTION_TIMEOUT_MS = 10_000  # the broker aborts a dead worker's open transaction after this
# Retrying a transactional call longer than this is retrying in a transaction the coordinator has aborted.
RETRY_LIMIT_S = 3 * TRANSACTION_TIMEOUT_MS / 1000
# send_offsets_to_transaction is given the transaction's lifetime, and taken for hung this long after it.
SEND_OFFSETS_TIMEOUT_S = TRANSACTION_TIMEOUT_MS / 1000
HUNG_AFTER_S = SEND_OFFSETS_TIMEOUT_S + 10
CHECKED_NAME, CHECKED_VALUE = CHECKED_HEADER
MAX_RENEWALS, RENEWAL_WINDOW_S = 5, 300.0  # fenced more often than this: two workers share one CDP_WORKER_ID

STITCH_EVENTS = Counter(
    "cdp_stitch_events_total",
    "Events stitched on this worker, by path (fast, linked, protocol, no_identifier; erased: dropped, a replay)",
    ["path"],
)
STITCH_MESSAGES = Counter(
    "cdp_stitch_messages_total", "Identity messages handled in the worker or sent to another partition", ["where"]
)
STITCH_BATCH_SECONDS = Histogram(
    "cdp_stitch_batch_seconds",
    "Time per stitch batch in each phase (handle; produce; wait: for the previous batch's commit; store)",
    ["phase"],
)
STITCH_ABORTS = Counter("cdp_stitch_aborted_batches_total", "Stitch batches aborted and read again")


class _GaveUp(Exception):
    """A transactional call kept failing with a retriable error for longer than the broker keeps a transaction
    open (a broker away longer than the transaction timeout): the transaction is lost, and only a new producer,
    which fences the old one, goes on."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(str(error))
        self.error = error


def _bounded(call: Callable[[], None], limit_s: float) -> None:
    """Make a blocking client call in a thread of its own and wait for it at most ``limit_s``; past that, give up
    on the producer (``_GaveUp``: a new one takes over, and the thread left waiting holds only the old one).

    librdkafka's send_offsets_to_transaction can wait for ever, past its own timeout, after the broker that was
    the group's coordinator went away (librdkafka issues #5456 and #5511: a coordinator request whose timeout is
    never checked, and a cached coordinator whose broker handle was retired). The stitcher then sat in that call
    for good while the broker was back."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="stitch-txn-call", daemon=True)
    thread.start()
    thread.join(limit_s)
    if not outcome:
        raise _GaveUp(KafkaError(KafkaError._TIMED_OUT, f"no answer within {limit_s:.0f} s", retriable=True))
    if outcome[0] is not None:
        raise outcome[0]


def _checked_and_hint(headers: Sequence[tuple[str, str | bytes | None]] | object) -> tuple[bool, bytes | None]:
    """Whether a raw event's producer validated it (``CHECKED_HEADER``), and its stitch hint (streams.keys).
    A consumed record's headers are a list of (name, bytes) pairs, or None."""
    checked, hint = False, None
    if isinstance(headers, list):
        for name, value in headers:
            if name == CHECKED_NAME:
                checked = value == CHECKED_VALUE
            elif name == HINT_HEADER and isinstance(value, bytes):
                hint = value
    return checked, hint


class _NodeCache:
    """Decoded node states, bounded: two generations of dicts, the older dropped when the newer fills up (the
    nodes that keep being read stay, at the cost of one dict copy per generation). None: a node erased, read from
    the store (where it is gone) on its next read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._new: dict[str, NodeState | None] = {}
        self._old: dict[str, NodeState | None] = {}

    def get(self, key: str) -> NodeState | None:
        state = self._new.get(key)
        if state is None:
            state = self._old.get(key)
            if state is not None:
                self.put(key, state)
        return state

    def put(self, key: str, state: NodeState | None) -> None:
        if len(self._new) >= self.size:
            self._old, self._new = self._new, {}
        self._new[key] = state

    def clear(self) -> None:
        self._new, self._old = {}, {}


@dataclass
class _Pending:
    """A batch produced and committing (in the commit thread): the loop handles the next one meanwhile."""

    out: BatchOutput
    first: dict[tuple[str, int], int]  # the first offset it consumed per input partition: where a failure rewinds
    commit: Future[dict[int, int] | None]  # the changelog's next offset per partition, None if aborted


class Stitcher:
    """The batch loop of one worker. ``assign``/``revoke`` are called from Faust's rebalance callbacks."""

    def __init__(self, settings: Settings, rules: IdentityRules, on_failure: Callable[[BaseException], None]) -> None:
        self.settings = settings
        self.rules = rules
        self.topics = topics_for(settings)
        self.partitions = settings.topic_partitions
        self.group = f"{settings.topic_prefix}-stitch"
        self.store = NodeStore(
            Path(settings.data_dir) / "identity" / settings.worker_id,
            settings.identity_store_mb,
            max_age_s=settings.purge_delete_retention_ms / 2000,  # it may have missed tombstones dropped since
        )
        self.counts = BatchCounts()
        self.on_failure = on_failure
        self._cache = _NodeCache(CACHE_NODES)
        self._wanted: set[int] = set()
        self._owned: set[int] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changelog_next: dict[int, int] = {}
        self._pending: _Pending | None = None
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="stitch-commit")
        self._renewals: list[float] = []
        self._messages: Consumer | None = None  # identity messages of the owned partitions
        self._raw: Consumer | None = None  # raw events of the owned partitions
        self._producer: Producer | None = None
        # Followed so that a replay of the raw topics cannot bring an erased person back (streams/privacy.py).
        self.ledger = PrivacyLedger(
            settings.kafka_bootstrap, self.topics.privacy_ledger, SubjectHasher(settings.privacy_key)
        )

    # -------------------------------------------------------------------------------------- lifecycle

    def start(self) -> Stitcher:
        """Connect, and fence any earlier incarnation of this worker (blocking: call from a thread)."""
        self.rules = self.rules.with_profile_ids(install_profile_ids(self.settings, self.topics))
        self.ledger.start()
        self._messages = Consumer(self._consumer_config())
        self._raw = Consumer(self._consumer_config())
        self._producer = self._new_producer()
        self._thread = threading.Thread(target=self._run, name="stitcher", daemon=True)
        self._thread.start()
        return self

    def _new_producer(self) -> Producer:
        """The transactional producer; initialising it aborts the transaction a killed predecessor with the same id
        left open (and fences that predecessor, should it still run)."""
        producer = Producer(
            producer_config(
                self.settings.kafka_bootstrap,
                **{
                    "transactional.id": f"{self.settings.topic_prefix}-stitch-{self.settings.worker_id}",
                    "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                    # A record not delivered within the transaction's lifetime fails the batch, which is read again.
                    "message.timeout.ms": TRANSACTION_TIMEOUT_MS,
                },
            )
        )
        self._retry(lambda: producer.init_transactions(60))
        return producer

    def _renew_producer(self, error: KafkaError) -> None:
        """After a fatal producer error: a new producer, so the worker goes on.

        The usual cause is a transaction the broker aborted while it could not be reached (an outage longer than
        the transaction timeout): it moves the producer's epoch on, and the old producer is then fenced for good.
        Nothing of that batch was committed, so a new producer and the batch read again lose nothing. Another
        live worker with the same ``CDP_WORKER_ID`` fences us the same way; renewing would fence it in turn, so
        repeated fencing within minutes is a configuration error and stops the worker."""
        now = time.monotonic()
        self._renewals = [t for t in self._renewals if now - t < RENEWAL_WINDOW_S] + [now]
        if len(self._renewals) > MAX_RENEWALS:
            raise RuntimeError(
                f"the stitcher's producer was fenced {len(self._renewals)} times within {RENEWAL_WINDOW_S:.0f} s "
                f"({error}): is another worker running with CDP_WORKER_ID={self.settings.worker_id!r}?"
            )
        log.error("stitch producer failed (%s); a new one takes over and the batch is read again", error)
        old, self._producer = self._producer, None
        if old is not None:
            old.purge()
        self._producer = self._new_producer()

    def stop(self) -> None:
        """Finish the batch in hand (commit it), let go of every partition, close (blocking)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._committer.shutdown(wait=True)
        for consumer in (self._messages, self._raw):
            if consumer is not None:
                consumer.close()
        if self._producer is not None:
            self._producer.flush(10)
        self.store.close_all()
        self.ledger.stop()
        log.info("stitch totals %s", orjson.dumps(self.counts.__dict__).decode())

    @property
    def owned(self) -> frozenset[int]:
        """The partitions this worker handles now (recovered and assigned)."""
        with self._cond:
            return frozenset(self._owned)

    def assign(self, partitions: Iterable[int]) -> None:
        """The worker's whole assignment (Faust's on_partitions_assigned); taken up between batches."""
        with self._cond:
            self._wanted = set(partitions)
            self._cond.notify_all()

    def revoke(self, partitions: Iterable[int]) -> None:
        """Let go of ``partitions``: returns once no batch of this worker handles them any more (blocking)."""
        gone = set(partitions)
        with self._cond:
            self._wanted -= gone
            self._cond.notify_all()
            while self._owned & gone and self._thread is not None and self._thread.is_alive():
                self._cond.wait(0.5)

    # ------------------------------------------------------------------------------------------- loop

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._follow_assignment()
                if not self._owned:
                    with self._cond:
                        self._cond.wait(0.2)
                    continue
                records = self._next_records()
                if records:
                    self._batch(records)
                else:
                    self._settle()  # nothing new: finish the commit in flight before waiting for more
            self._settle()
        except BaseException as exc:
            if self._stop.is_set():
                log.warning("the stitcher stopped with a batch unfinished (%r): it is read again", exc)
            else:
                log.exception("the stitcher stopped on an error")
                self.on_failure(exc)
        finally:
            pending, self._pending = self._pending, None
            if pending is not None:  # let the commit in flight end (either way) before the producer is closed
                pending.commit.exception()
            with self._cond:
                self._owned = set()
                self._cond.notify_all()

    def _next_records(self) -> list[Message]:
        """Identity messages first, whatever has arrived of them; raw events fill the room left (and are waited
        for, briefly, only when no identity message is there)."""
        assert self._messages is not None and self._raw is not None
        records = self._messages.consume(BATCH_RECORDS, 0)
        room = BATCH_RECORDS - len(records)
        if room > 0:
            records += self._raw.consume(room, 0 if records else POLL_S)
        return records

    def _batch(self, records: list[Message]) -> None:
        started = time.perf_counter()
        ops_topic = self.topics.identity_ops
        raw: list[RawEvent] = []
        messages: list[bytes] = []
        first: dict[tuple[str, int], int] = {}
        after: dict[tuple[str, int], int] = {}
        for record in records:
            error = record.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume: %s", error)
                continue
            tp = (str(record.topic()), int(record.partition() or 0))
            offset = int(record.offset() or 0)
            first.setdefault(tp, offset)
            after[tp] = offset + 1
            value = record.value() or b""
            if tp[0] == ops_topic:
                messages.append(value)
            else:
                raw.append((value, *_checked_and_hint(record.headers())))
        if not after:
            return
        erased = self.ledger.erased_before if self.ledger.erasing_any else None  # no cost while nobody was erased
        out = StitchBatch(self.rules, self.topics, self.partitions, self._owned, self._read, LOCAL_BUDGET, erased).run(
            raw, messages
        )
        handled = time.perf_counter()
        STITCH_BATCH_SECONDS.labels("handle").observe(handled - started)
        if not self._settle(also=first):
            return  # handled on top of a batch that was aborted: read again with it
        if not self._produce(out, after):
            STITCH_ABORTS.inc()
            self._rewind(first)
            return
        self._pending = _Pending(out, first, self._committer.submit(self._commit, out))
        STITCH_BATCH_SECONDS.labels("produce").observe(time.perf_counter() - handled)
        log.debug(
            "batch of %d records (%d out): handle %.1f ms", len(records), len(out.records), (handled - started) * 1000
        )

    def _settle(self, also: dict[tuple[str, int], int] | None = None) -> bool:
        """Wait for the batch in flight to commit, then keep its node states; False if it was aborted (its records,
        and those of the batch handled on top of it, ``also``, are then read again)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return True
        waited = time.perf_counter()
        changelog_next = pending.commit.result()
        settled = time.perf_counter()
        STITCH_BATCH_SECONDS.labels("wait").observe(settled - waited)
        if changelog_next is None:
            STITCH_ABORTS.inc()
            self._rewind({**(also or {}), **pending.first})
            return False
        out = pending.out
        for partition, values in out.changelog.items():
            self.store.write(partition, values, changelog_next[partition])
        for node, (_, state) in out.states.items():
            self._cache.put(node, state)
        self._count(out.counts)
        STITCH_BATCH_SECONDS.labels("store").observe(time.perf_counter() - settled)
        return True

    def _read(self, partition: int, key: str) -> NodeState | None:
        """A node's state: as the batch in flight leaves it, else as committed."""
        pending = self._pending
        if pending is not None:
            known = pending.out.states.get(key)
            if known is not None:
                return known[1]
        state = self._cache.get(key)
        if state is None:
            raw = self.store.get(partition, key)
            if raw is None:
                return None
            state = NodeState.from_dict(orjson.loads(raw))
            self._cache.put(key, state)
        return state

    def _count(self, counts: BatchCounts) -> None:
        self.counts.add(counts)
        STITCH_EVENTS.labels("fast").inc(counts.fast)
        STITCH_EVENTS.labels("linked").inc(counts.linked)
        STITCH_EVENTS.labels("protocol").inc(counts.protocol)
        STITCH_EVENTS.labels("no_identifier").inc(counts.without_identifiers)
        STITCH_EVENTS.labels("erased").inc(counts.erased)
        STITCH_MESSAGES.labels("worker").inc(counts.handled)
        STITCH_MESSAGES.labels("sent").inc(counts.sent)

    # ---------------------------------------------------------------------------------- transactions

    def _produce(self, out: BatchOutput, after: dict[tuple[str, int], int]) -> bool:
        """Open the batch's transaction: its records and the consumed offsets; False if it had to be aborted."""
        producer = self._producer
        assert producer is not None and self._raw is not None
        self._changelog_next = {}
        changelog = self.topics.identity_nodes
        try:
            producer.begin_transaction()
            for topic, partition, key, value in out.records:
                report = self._on_changelog if topic == changelog else None
                while True:
                    try:
                        producer.produce(topic, value=value, key=key, partition=partition, on_delivery=report)
                        break
                    except BufferError:  # the local queue is full: let it drain
                        producer.poll(0.05)
            offsets = [TopicPartition(t, p, o) for (t, p), o in after.items()]
            group = self._raw.consumer_group_metadata()
            # Retriable, e.g. CONCURRENT_TRANSACTIONS while the coordinator moves after a broker's crash.
            self._retry(
                lambda: _bounded(
                    lambda: producer.send_offsets_to_transaction(offsets, group, SEND_OFFSETS_TIMEOUT_S), HUNG_AFTER_S
                )
            )
            return True
        except (KafkaException, _GaveUp) as exc:
            self._abandon(exc)
            return False

    def _commit(self, out: BatchOutput) -> dict[int, int] | None:
        """Commit the open transaction (in the commit thread); the changelog's next offsets, or None if aborted."""
        producer = self._producer
        assert producer is not None
        try:
            self._retry(lambda: producer.commit_transaction(60))
            # commit_transaction delivered every record; serve the reports that say where the changelog went.
            producer.poll(0)
            missing = set(out.changelog) - set(self._changelog_next)
            if missing:
                raise RuntimeError(f"no changelog offsets reported for partitions {sorted(missing)}")
            return dict(self._changelog_next)
        except (KafkaException, _GaveUp) as exc:
            self._abandon(exc)
            return None

    def _abandon(self, exc: KafkaException | _GaveUp) -> None:
        """A failed transaction: abort it, or renew a producer the failure left fenced or that gave up on its
        transaction (else raise)."""
        producer = self._producer
        assert producer is not None
        if isinstance(exc, _GaveUp):
            self._renew_producer(exc.error)
            return
        error = exc.args[0]
        if not isinstance(error, KafkaError):
            raise exc
        if error.txn_requires_abort():
            log.warning("stitch batch aborted (%s); it is read again", error)
            try:
                self._retry(lambda: producer.abort_transaction(60))
                return
            except _GaveUp as gave_up:
                self._renew_producer(gave_up.error)
                return
            except KafkaException as abort_exc:
                error = abort_exc.args[0]
        if not error.fatal():
            raise exc
        self._renew_producer(error)

    def _retry(self, call: Callable[[], None]) -> None:
        """Retry a transactional call while the error says retrying may work (e.g. the broker away), unless the
        worker is stopping (the shutdown deadline ends a process whose broker is gone). Past ``RETRY_LIMIT_S`` the
        broker has aborted the transaction, and a call in it can time out for ever: ``_GaveUp``."""
        deadline = time.monotonic() + RETRY_LIMIT_S
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not (isinstance(error, KafkaError) and error.retriable()) or self._stop.is_set():
                    raise
                if time.monotonic() > deadline:
                    raise _GaveUp(error) from exc
                log.warning("transaction: %s; retrying", error)
                time.sleep(0.5)

    def _on_changelog(self, error: KafkaError | None, record: Message) -> None:
        if error is None:
            partition, offset = int(record.partition() or 0), int(record.offset() or 0)
            self._changelog_next[partition] = max(self._changelog_next.get(partition, 0), offset + 1)

    def _rewind(self, first: dict[tuple[str, int], int]) -> None:
        """After an aborted batch: read its records again (the node states of the batch were never kept)."""
        for (topic, partition), offset in first.items():
            self._consumer_of(topic).seek(TopicPartition(topic, partition, offset))

    # ------------------------------------------------------------------------------------ assignment

    def _follow_assignment(self) -> None:
        with self._cond:
            wanted = set(self._wanted)
        gone, new = self._owned - wanted, wanted - self._owned
        if gone or new:
            self._settle()  # the batch in flight is committed (or aborted) before a partition changes hands
        if gone:
            self._release(gone)
        if new:
            self._acquire(new)

    def _consumer_of(self, topic: str) -> Consumer:
        consumer = self._messages if topic == self.topics.identity_ops else self._raw
        assert consumer is not None
        return consumer

    def _inputs(self, partitions: Iterable[int]) -> dict[str, list[TopicPartition]]:
        """The input partitions of the given graph partitions, by the consumer that reads them."""
        owned = sorted(partitions)
        return {
            self.topics.identity_ops: [TopicPartition(self.topics.identity_ops, p) for p in owned],
            "raw": [TopicPartition(t, p) for p in owned for t in self.topics.raw_all],
        }

    def _release(self, partitions: set[int]) -> None:
        for name, tps in self._inputs(partitions).items():
            self._consumer_of(name).incremental_unassign(tps)
        for partition in partitions:
            self.store.close(partition)
        # Another worker may change these nodes from now on; the cache does not know which node is where.
        self._cache.clear()
        with self._cond:
            self._owned -= partitions
            self._cond.notify_all()
        log.info("stitcher released partitions %s", sorted(partitions))

    def _acquire(self, partitions: set[int]) -> None:
        started = time.perf_counter()
        recovered = sum(self._recover(partition) for partition in sorted(partitions))
        if self._stop.is_set():
            return  # stopping: a recovery cut short must not be handled from
        for name, tps in self._inputs(partitions).items():
            consumer = self._consumer_of(name)
            committed = consumer.committed(tps, 60)
            for tp in committed:
                if tp.offset < 0:
                    tp.offset = -2  # OFFSET_BEGINNING: a partition nobody has committed on yet
            consumer.incremental_assign(committed)
        with self._cond:
            self._owned |= partitions
        log.info(
            "stitcher owns partitions %s (%d node states recovered in %.1f s)",
            sorted(partitions),
            recovered,
            time.perf_counter() - started,
        )

    def _recover(self, partition: int) -> int:
        """Bring the local copy of a partition's node states up to the end of its changelog; returns the states read.

        The end is the changelog's high watermark when the partition was acquired: a previous owner committed
        its last batch before letting go (or its open transaction is aborted first: reading committed records
        stops at it until then)."""
        start = self.store.open(partition)
        reader = Consumer(self._consumer_config())
        try:
            tp = TopicPartition(self.topics.identity_nodes, partition)
            low, high = reader.get_watermark_offsets(tp, 60, False)
            if start > high:
                log.warning("partition %d: local node store is ahead of its changelog; rebuilding it", partition)
                self.store.wipe(partition)
                start = self.store.open(partition)
            if start >= high:
                return 0
            reader.assign([TopicPartition(tp.topic, partition, max(start, low))])
            pending: dict[str, bytes | None] = {}
            read = 0
            waited = time.monotonic()
            position = start
            while position < high and not self._stop.is_set():  # stopped: what was read is kept, with its offset
                for record in reader.consume(10_000, 0.5):
                    if record.error() is None:
                        pending[orjson.loads(record.key() or b'""')] = record.value()
                        read += 1
                position = reader.position([tp])[0].offset
                if len(pending) >= 50_000 or position >= high:
                    self.store.write(partition, pending, max(position, start))
                    pending = {}
                if time.monotonic() - waited > 10:
                    log.info("partition %d: recovering node states, at %d of %d", partition, position, high)
                    waited = time.monotonic()
            return read
        finally:
            reader.close()

    def _consumer_config(self) -> dict[str, object]:
        return {
            "bootstrap.servers": self.settings.kafka_bootstrap,
            "group.id": self.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            # librdkafka pauses a partition for this long whenever its prefetch queue is full (1 s by default).
            "fetch.queue.backoff.ms": 20,
            "enable.partition.eof": False,
        }
