"""Prometheus metrics of the HTTP process (the other stages' are in streams/metrics.py, sinks/metrics.py and beside
the stitcher; README "Metrics" lists them all)."""

from prometheus_client import Counter, Histogram

EVENTS_ACCEPTED = Counter("cdp_events_accepted_total", "Events acknowledged by the broker", ["channel"])
EVENTS_REJECTED = Counter("cdp_events_rejected_total", "Events rejected at the edge", ["reason"])
PRODUCE_SECONDS = Histogram("cdp_produce_seconds", "Wait for broker acknowledgement per request")
LOOKUP_SECONDS = Histogram(
    "cdp_lookup_seconds",
    "Audience lookups by identifier, from request to answer",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
AUTH_FAILURES = Counter(
    "cdp_auth_failures_total", "Requests refused for their credentials (401, 403), by what was wrong", ["reason"]
)
