"""Source status: counting in a process, and one line per source from all processes' records (pure)."""

from __future__ import annotations

from dataclasses import replace

from streams.source_status import FRESH_S, SourceStats, SourceStatus, summarise, today

NOW = 1_800_000_000_000


def test_stats_count_rows_errors_and_state() -> None:
    stats = SourceStats("worker@h:1")
    stats.rows("crm", "postgres", 5)
    stats.rows("crm", "postgres", 2)
    stats.error("crm", "postgres", "crm.contacts: email: not valid")
    stats.state("crm", "postgres", "running", lag=3)
    (s,) = stats.snapshot()
    assert (s.rows_today, s.state, s.lag, s.day) == (7, "running", 3, today())
    assert s.last_error == "crm.contacts: email: not valid" and s.last_error_at_ms


def record(reporter: str, **over: object) -> SourceStatus:
    base = SourceStatus("crm", "postgres", reporter, "running", 0, None, None, 10, "2026-01-02", NOW - 1000)
    return replace(base, **over)  # type: ignore[arg-type]


def test_rows_today_add_up_over_restarts_and_processes() -> None:
    records = [
        record("worker@a:1", state="stopped", rows_today=40, updated_at_ms=NOW - 3_600_000),  # earlier run today
        record("worker@a:2", rows_today=5, lag=7),
        record("worker@b:1", rows_today=3, lag=2),
        record("worker@a:0", rows_today=999, day="2026-01-01", updated_at_ms=NOW - 86_400_000),  # yesterday
        replace(record("worker@a:2"), source="other"),
    ]
    s = summarise(records, "crm", NOW, "2026-01-02")
    assert s is not None
    assert (s.state, s.rows_today, s.lag) == ("running", 48, 7)
    assert s.reporter == "worker@a:2,worker@b:1"


def test_a_failed_reporter_or_only_stale_ones_show() -> None:
    failing = [record("w@1"), record("w@2", state="failed", last_error="boom", last_error_at_ms=NOW)]
    s = summarise(failing, "crm", NOW, "2026-01-02")
    assert s is not None and (s.state, s.last_error) == ("failed", "boom")
    stale = [record("w@1", updated_at_ms=NOW - int(FRESH_S * 1000) - 1)]
    s = summarise(stale, "crm", NOW, "2026-01-02")
    assert s is not None and s.state == "stopped" and s.lag is None
    assert summarise(stale, "nobody", NOW, "2026-01-02") is None
