"""Prometheus metrics of the ClickHouse side: rows and insert latency per table (merges and identity refusals are
the rows of their tables), audience evaluations and their duration. Listed in README ("Metrics")."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = [
    "AUDIENCE_CHANGES",
    "AUDIENCE_EVALUATIONS",
    "AUDIENCE_EVALUATION_SECONDS",
    "SINK_INSERT_SECONDS",
    "SINK_ROWS",
]

SINK_ROWS = Counter("cdp_sink_rows_total", "Rows inserted by the sinks, per table", ["table"])
SINK_INSERT_SECONDS = Histogram("cdp_sink_insert_seconds", "Time per insert of one block, per table", ["table"])
AUDIENCE_EVALUATIONS = Counter("cdp_audience_evaluations_total", "Audience rules evaluated", ["scope"])
AUDIENCE_EVALUATION_SECONDS = Histogram("cdp_audience_evaluation_seconds", "Time to evaluate one audience rule")
AUDIENCE_CHANGES = Counter("cdp_audience_changes_total", "Members entering or leaving audiences", ["status"])
