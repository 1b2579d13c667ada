"""An SDK-like client for runs that must account for every event: the chaos suite and the soak stage.

It sends a fixed set of unique events through ``/v1/batch`` at a steady rate, the way Segment's and RudderStack's
SDKs deliver them: each sender flushes one batch at a time, and a batch answered with a 5xx, or lost to a
connection error or a timeout, is sent again with the same bytes (the same messageIds) until it is answered 200.
A 4xx is never retried (the SDKs drop such a batch), and is reported. When the server was away, a sender is
behind its schedule and flushes back to back until it has caught up, as an SDK empties its queue.

What it records is what the assertions need: the messageIds answered 200 (the only events that may be, and must
be, stored), every answer by status, and the longest stall: the longest time in which no request was answered
200 while the client had events to send.

The events are journeys of people (``journey_event``): every event carries the person's cookie, and from the
fourth event on their user id, linked by an identify with an e-mail: so every stored event must have a profile,
and all of one person's events the same one.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

EVENTS_PER_PERSON = 10
IDENTIFY_AT = 3  # the step at which a person logs in: from then on their events carry the user id
ACTIVE_PEOPLE = 200  # people whose journeys interleave at any moment
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 2.0
KEEPALIVE_S = 2.0  # below the collector's keep-alive timeout


def anonymous_id(tag: str, person: int) -> str:
    return f"{tag}-a{person}"


# What a site's consent manager adds to every event of a visitor who accepted everything: the journeys build DMP
# profiles (advertising consent) as well as customer profiles.
CONSENT: dict[str, bool] = {"Advertising": True, "Analytics": True, "Functional": True}


def journey_event(tag: str, i: int, people: int | None = None) -> dict[str, Any]:
    """Event ``i`` (messageId ``{tag}-{i}``) of the journeys: ``ACTIVE_PEOPLE`` people at a time, each with
    ``EVENTS_PER_PERSON`` events in order: a page, two product views, the login (identify with user id and
    e-mail), then product events under the user id, the tenth an order, each with consent to every purpose
    (``CONSENT``). No timestamp: the sender stamps a batch when it first sends it, so a retried batch is the same
    bytes. ``people`` bounds the population: once that
    many have come, the journeys start again with the first person (returning customers, same cookie, user id
    and e-mail); None: every journey is a new person."""
    block = ACTIVE_PEOPLE * EVENTS_PER_PERSON
    person = (i % ACTIVE_PEOPLE) + ACTIVE_PEOPLE * (i // block)
    if people is not None:
        person %= people
    step = (i // ACTIVE_PEOPLE) % EVENTS_PER_PERSON
    event: dict[str, Any] = {"messageId": f"{tag}-{i}", "anonymousId": anonymous_id(tag, person)}
    event["context"] = {"consent": {"categoryPreferences": dict(CONSENT)}}
    category = ("shoes", "bags", "hats")[person % 3]
    if step == 0:
        event |= {"type": "page", "name": "Home", "properties": {"path": "/", "category": category}}
    elif step < IDENTIFY_AT:
        properties = {"sku": f"s{step}", "category": category}
        event |= {"type": "track", "event": "Product Viewed", "properties": properties}
    elif step == IDENTIFY_AT:
        event |= {"type": "identify", "userId": f"{tag}-u{person}", "traits": {"email": f"{tag}-p{person}@example.com"}}
    else:
        name = "Order Completed" if step == EVENTS_PER_PERSON - 1 else "Product Added"
        event |= {"type": "track", "event": name, "userId": f"{tag}-u{person}", "properties": {"revenue": step}}
    return event


def journey_people(count: int) -> int:
    """How many people the first ``count`` events of the journeys belong to."""
    blocks, rest = divmod(count, ACTIVE_PEOPLE * EVENTS_PER_PERSON)
    return blocks * ACTIVE_PEOPLE + min(rest, ACTIVE_PEOPLE)


@dataclass
class LoadReport:
    """What one run of the client saw."""

    sent: int = 0  # events handed to a request at least once
    accepted_count: int = 0  # events answered 200
    accepted: set[str] = field(default_factory=set)  # their messageIds (unless the load keeps none)
    answers: Counter[str] = field(default_factory=Counter)  # "200", "503", "ConnectError", ... per request
    refused: list[str] = field(default_factory=list)  # 4xx answers and per-event rejections: never expected
    gave_up: int = 0  # events whose batch was still not accepted when retrying had to stop
    started_at: float = 0.0  # time.monotonic()
    finished_at: float = 0.0
    longest_stall_s: float = 0.0  # longest time without a 200 answer while events were waiting
    stall_from_s: float = 0.0  # when it began, seconds after the start
    slowest_200_s: float = 0.0  # the longest request that was answered 200
    failed_answers: list[tuple[float, str]] = field(default_factory=list)  # (seconds after start, status)
    failure_reasons: Counter[str] = field(default_factory=Counter)  # "503: <the answer's detail>" per request
    ok_at: list[float] = field(default_factory=list)  # when each 200 came, seconds after the start, in order

    @property
    def seconds(self) -> float:
        return max(self.finished_at - self.started_at, 1e-9)

    def stall_after(self, at: float, within: float) -> float:
        """The longest time without a 200 that began in [at, at + within] (seconds after the start): what a fault
        injected at ``at`` cost the client."""
        times = [at, *(t for t in self.ok_at if t > at)]
        gaps = [after - before for before, after in itertools.pairwise(times) if before <= at + within]
        return max(gaps, default=0.0)

    def summary(self) -> str:
        failed = [t for t, _ in self.failed_answers]
        window = f" between {min(failed):.1f} s and {max(failed):.1f} s" if failed else ""
        answers = ", ".join(f"{k} x{v}" for k, v in sorted(self.answers.items(), key=lambda kv: -kv[1]))
        reasons = "; ".join(f"{k} x{v}" for k, v in self.failure_reasons.most_common(3))
        return (
            f"{self.accepted_count:,} events accepted of {self.sent:,} sent in {self.seconds:.1f} s "
            f"({self.accepted_count / self.seconds:,.0f}/s); requests: {answers}{window}; "
            f"longest stall {self.longest_stall_s:.2f} s (from {self.stall_from_s:.1f} s), "
            f"slowest 200 {self.slowest_200_s:.2f} s" + (f"; failures: {reasons}" if reasons else "")
        )


class SdkLoad:
    """``count`` events (``event(i)`` for i below it, made when first sent) at ``rate`` events/s in batches of
    ``batch_size`` by ``senders`` concurrent senders, in a thread of its own (so the caller can inject faults
    meanwhile). ``retry_for`` bounds how long after its first send a batch is retried. ``keep_ids=False`` counts
    the accepted events without keeping their ids (a long soak)."""

    def __init__(
        self,
        url: str,
        write_key: str,
        count: int,
        event: Callable[[int], dict[str, Any]],
        rate: float,
        batch_size: int = 50,
        senders: int = 8,
        retry_for: float = 300.0,
        timeout: float = 30.0,
        keep_ids: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, self.write_key, self.event, self.keep_ids = url.rstrip("/"), write_key, event, keep_ids
        self.count, self.rate, self.batch_size, self.senders = count, rate, batch_size, senders
        self.retry_for, self.timeout = retry_for, timeout
        self.transport = transport  # tests answer from a fake; None: the network
        self.report = LoadReport()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------------------------------ control

    def start(self) -> SdkLoad:
        self.report.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="sdk-load", daemon=True)
        self._thread.start()
        return self

    @property
    def accepted(self) -> int:
        with self._lock:
            return self.report.accepted_count

    def wait_accepted(self, count: int, timeout: float) -> None:
        """Until ``count`` events are accepted (for timing a fault by progress), or the load has ended."""
        deadline = time.monotonic() + timeout
        while self.accepted < count and self.running:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.accepted} of {count} events accepted after {timeout:.0f} s")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float) -> LoadReport:
        """Until every event is accepted (or given up on); the report."""
        assert self._thread is not None, "start() first"
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop()
            raise TimeoutError(f"load not finished after {timeout:.0f} s: {self.report.summary()}")
        if self._error is not None:
            raise self._error
        return self.report

    def drain(self) -> None:
        """Send no new batch; the batches already sent are still retried until accepted (then ``wait``)."""
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def stop(self) -> None:
        """Abandon the load (teardown after a failure): senders stop at their next step."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    # ------------------------------------------------------------------------------------------ sending

    def _run(self) -> None:
        try:
            asyncio.run(self._send_all())
        except BaseException as exc:  # surfaced by wait()
            self._error = exc
        finally:
            self.report.finished_at = time.monotonic()
            self._finish_stalls()

    async def _send_all(self) -> None:
        # An idle connection is closed here before the server's keep-alive timeout (uvicorn's 5 s) closes it: else
        # a batch sent on it just as the server closes it fails with a ReadError, which is the client's race.
        limits = httpx.Limits(
            max_connections=self.senders, max_keepalive_connections=self.senders, keepalive_expiry=KEEPALIVE_S
        )
        async with httpx.AsyncClient(
            auth=(self.write_key, ""), timeout=self.timeout, limits=limits, transport=self.transport
        ) as client:
            await asyncio.gather(*(self._sender(client, s) for s in range(self.senders)))

    async def _sender(self, client: httpx.AsyncClient, index: int) -> None:
        start = self.report.started_at
        size = self.batch_size
        batches = range(index * size, self.count, self.senders * size)
        for j, first in enumerate(batches):
            due = start + (j * self.senders + index) * size / self.rate
            while (wait := due - time.monotonic()) > 0 and not self._draining.is_set():
                await asyncio.sleep(min(wait, 0.1))
            if self._stop.is_set() or self._draining.is_set():
                return
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            batch = [{"timestamp": stamp, **self.event(i)} for i in range(first, min(first + size, self.count))]
            body = orjson.dumps({"batch": batch})
            with self._lock:
                self.report.sent += len(batch)
            await self._deliver(client, body, [e["messageId"] for e in batch])

    async def _deliver(self, client: httpx.AsyncClient, body: bytes, ids: list[str]) -> None:
        """One batch until it is answered 200 (or 4xx, or retrying has to stop)."""
        first = time.monotonic()
        delay = RETRY_FIRST_S
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                r = await client.post(
                    f"{self.url}/v1/batch", content=body, headers={"content-type": "application/json"}
                )
                status = str(r.status_code)
            except httpx.HTTPError as exc:
                r, status = None, type(exc).__name__
            now = time.monotonic()
            with self._lock:
                self.report.answers[status] += 1
                if status == "200" and r is not None:
                    self.report.accepted_count += len(ids)
                    if self.keep_ids:
                        self.report.accepted.update(ids)
                    self.report.ok_at.append(now - self.report.started_at)
                    self.report.slowest_200_s = max(self.report.slowest_200_s, now - sent)
                    rejected = r.json().get("rejected") or []
                    self.report.refused += [f"rejected in a 200 answer: {x}" for x in rejected]
                    return
                self.report.failed_answers.append((now - self.report.started_at, status))
                self.report.failure_reasons[_reason(status, r)] += 1
                if r is not None and 400 <= r.status_code < 500:
                    self.report.refused.append(f"{status}: {r.text[:300]}")
                    return
            if now - first > self.retry_for:
                with self._lock:
                    self.report.gave_up += len(ids)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _finish_stalls(self) -> None:
        """The longest gap between consecutive 200 answers (the start counts as one)."""
        self.report.ok_at.sort()
        for before, after in itertools.pairwise([0.0, *self.report.ok_at]):
            if after - before > self.report.longest_stall_s:
                self.report.longest_stall_s = after - before
                self.report.stall_from_s = before


def _reason(status: str, answer: httpx.Response | None) -> str:
    """A failed request in a few words: the status and the error the server gave (the ``error`` of its body)."""
    if answer is None:
        return status
    try:
        detail = orjson.loads(answer.content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        detail = None
    return f"{status}: {str(detail or answer.text)[:120]}"
