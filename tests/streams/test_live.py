"""The live tail's memory (streams/live.py), fed by hand: the newest events per source first, at most `keep` per
source, dead letters with their source, records that are not JSON kept rather than dropped."""

from __future__ import annotations

import orjson

from streams.live import LiveTail

RAW, DEAD = "t.events.online", "t.deadletter"


def tail(keep: int = 3) -> LiveTail:
    return LiveTail("127.0.0.1:1", [RAW], DEAD, keep=keep)  # never started: no Kafka client


def event(source: str, n: int) -> bytes:
    return orjson.dumps({"type": "track", "event": f"e{n}", "sourceId": source})


def test_events_are_kept_per_source_newest_first_and_bounded() -> None:
    live = tail(keep=3)
    for n in range(5):
        live.apply(RAW, 1000 + n, event("web", n))
    live.apply(RAW, 2000, event("shop", 9))
    assert [e["event"] for e in live.events("web")] == ["e4", "e3", "e2"]
    assert [e["event"] for e in live.events()] == ["e9", "e4", "e3"]
    assert live.counts() == {"web": 3, "shop": 1}
    assert live.events("nobody") == []


def test_dead_letters_are_listed_by_their_source() -> None:
    live = tail()
    live.apply(DEAD, 5, orjson.dumps({"reason": "event: empty", "source": "web", "event": {"type": "track"}}))
    live.apply(DEAD, 6, orjson.dumps({"reason": "not an identity message", "raw": "x"}))
    live.apply(DEAD, 7, b"not json")
    assert [r["reason"] for r in live.rejected("web")] == ["event: empty"]
    assert [r.get("raw") for r in live.rejected()] == ["not json", "x", None]


def test_a_raw_record_that_is_not_an_event_is_skipped() -> None:
    live = tail()
    live.apply(RAW, 1, b"[1, 2]")
    live.apply(RAW, 2, b"{broken")
    assert live.events() == []
