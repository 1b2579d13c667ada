"""Prometheus metrics of the HTTP process."""

from prometheus_client import Counter, Histogram

EVENTS_ACCEPTED = Counter("cdp_events_accepted_total", "Events acknowledged by the broker", ["channel"])
EVENTS_REJECTED = Counter("cdp_events_rejected_total", "Events rejected at the edge", ["reason"])
PRODUCE_SECONDS = Histogram("cdp_produce_seconds", "Wait for broker acknowledgement per request")
