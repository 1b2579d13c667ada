"""The bench's before/after scrape of /metrics: which stage's series moved."""

from __future__ import annotations

from bench.metrics_scrape import moved_by_stage, parse_metrics

BEFORE = """# HELP cdp_events_accepted_total Events accepted
# TYPE cdp_events_accepted_total counter
cdp_events_accepted_total{channel="online"} 0.0
cdp_sink_rows_total{table="events_landing"} 10.0
cdp_lookup_seconds_count 3.0
"""
AFTER = """cdp_events_accepted_total{channel="online"} 250.0
cdp_events_accepted_total{channel="mobile"} 40.0
cdp_sink_rows_total{table="events_landing"} 10.0
cdp_lookup_seconds_count 3.0
cdp_stitch_events_total{path="fast"} 120.0
"""


def test_the_series_that_changed_or_appeared_are_listed_per_stage() -> None:
    moved = moved_by_stage(parse_metrics(BEFORE), parse_metrics(AFTER))
    assert moved["collector"] == [
        'cdp_events_accepted_total{channel="mobile"}',
        'cdp_events_accepted_total{channel="online"}',
    ]
    assert moved["stitching"] == ['cdp_stitch_events_total{path="fast"}']
    assert moved["sinks"] == [] and moved["lookups"] == []  # present but unchanged: did not move
