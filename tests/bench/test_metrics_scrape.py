"""The bench's scrapes of /metrics: which of the README's metric families moved, and the README's list itself."""

from __future__ import annotations

import importlib
from pathlib import Path

from prometheus_client import REGISTRY

from bench.metrics_scrape import NOT_DRIVEN, README, family_moves, parse_metrics, readme_families, report_lines

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "cdp", "identity", "schemas", "sinks", "streams")

BEFORE = """# HELP cdp_events_accepted_total Events accepted
# TYPE cdp_events_accepted_total counter
cdp_events_accepted_total{channel="online"} 0.0
cdp_sink_rows_total{table="events_landing"} 10.0
cdp_lookup_seconds_bucket{le="0.001"} 3.0
cdp_lookup_seconds_count 3.0
cdp_consumer_lag{group="g",topic="t"} 0.0
"""
DURING = """cdp_consumer_lag{group="g",topic="t"} 40.0
"""
AFTER = """cdp_events_accepted_total{channel="online"} 250.0
cdp_events_accepted_total{channel="mobile"} 40.0
cdp_sink_rows_total{table="events_landing"} 10.0
cdp_lookup_seconds_bucket{le="0.001"} 3.0
cdp_lookup_seconds_count 3.0
cdp_consumer_lag{group="g",topic="t"} 0.0
cdp_stitch_events_total{path="fast"} 120.0
"""
FAMILIES = {
    "collector": ["cdp_events_accepted_total"],
    "stitching": ["cdp_stitch_events_total", "cdp_stitch_aborted_batches_total"],
    "consumers": ["cdp_consumer_lag"],
    "sinks": ["cdp_sink_rows_total"],
    "lookups": ["cdp_lookup_seconds"],
}


def test_a_family_moved_when_a_series_changed_or_appeared_in_any_later_scrape() -> None:
    later = [parse_metrics(DURING), parse_metrics(AFTER)]
    moves = {m.family: m for m in family_moves(parse_metrics(BEFORE), later, FAMILIES)}
    assert moves["cdp_events_accepted_total"].moved and moves["cdp_events_accepted_total"].delta == 290
    assert moves["cdp_stitch_events_total"].moved and moves["cdp_stitch_events_total"].series == 1
    assert moves["cdp_consumer_lag"].moved and moves["cdp_consumer_lag"].delta == 0  # up while loaded, back at 0
    assert not moves["cdp_sink_rows_total"].moved and not moves["cdp_lookup_seconds"].moved  # present, unchanged
    lines = {line.split()[1]: line for line in report_lines(list(moves.values()))}
    assert lines["cdp_sink_rows_total"].endswith("FAIL: did not move")
    assert "FAIL" not in lines["cdp_stitch_aborted_batches_total"]  # a fault counter: not required


def test_a_histogram_moves_by_its_count() -> None:
    after = parse_metrics(BEFORE.replace("cdp_lookup_seconds_count 3.0", "cdp_lookup_seconds_count 5.0"))
    (move,) = family_moves(parse_metrics(BEFORE), [after], {"lookups": ["cdp_lookup_seconds"]})
    assert move.moved and move.delta == 2


def test_the_readme_lists_every_metric_the_code_registers_and_no_other() -> None:
    for path in sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
        if "prometheus_client" in path.read_text():
            importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    registered = {
        f"{m.name}_total" if m.type == "counter" else m.name for m in REGISTRY.collect() if m.name.startswith("cdp_")
    }
    listed = [name for names in readme_families(README.read_text()).values() for name in names]
    assert sorted(listed) == sorted(registered)
    assert set(NOT_DRIVEN) < set(listed)
    assert {"collector", "auth", "stitching", "consumers", "sinks", "audiences", "lookups"} <= set(readme_families())
