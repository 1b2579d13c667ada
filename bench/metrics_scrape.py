"""What moved on the pipeline's ``/metrics`` while the bench ran: one scrape when the shared `cdp run` starts,
one before it stops, and per stage of the pipeline (the README's metrics table) the series whose value changed.

A stage whose series did not move is named as such: the scrape shows the metrics are wired, not only declared.
"""

from __future__ import annotations

import httpx

__all__ = ["STAGE_FAMILIES", "moved_by_stage", "parse_metrics", "scrape"]

# Per stage of the pipeline, the metric families that show it working (histograms by their _count).
STAGE_FAMILIES: dict[str, tuple[str, ...]] = {
    "collector": ("cdp_events_accepted_total", "cdp_produce_seconds_count"),
    "stitching": ("cdp_stitch_events_total", "cdp_stitch_batch_seconds_count"),
    "consumers": ("cdp_consumer_lag",),
    "sinks": ("cdp_sink_rows_total", "cdp_sink_insert_seconds_count"),
    "audiences": ("cdp_audience_evaluations_total", "cdp_audience_evaluation_seconds_count"),
    "lookups": ("cdp_lookup_seconds_count",),
    "auth": ("cdp_auth_failures_total",),
}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {series (name with its labels): value}; comments and unreadable lines left out."""
    series: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            series[name] = float(value)
        except ValueError:
            continue
    return series


def _family(series: str) -> str:
    return series.partition("{")[0]


def moved_by_stage(before: dict[str, float], after: dict[str, float]) -> dict[str, list[str]]:
    """Per stage, the series of its families that appeared or changed value between the two scrapes."""
    changed = [s for s, v in after.items() if before.get(s) != v]
    return {stage: sorted(s for s in changed if _family(s) in families) for stage, families in STAGE_FAMILIES.items()}


def scrape(url: str) -> dict[str, float]:
    """The series of ``url``/metrics; empty when the process does not answer (the bench goes on)."""
    try:
        r = httpx.get(f"{url.rstrip('/')}/metrics", timeout=10)
        r.raise_for_status()
    except httpx.HTTPError:
        return {}
    return parse_metrics(r.text)
