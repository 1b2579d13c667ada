"""The real Kafka broker, PostgreSQL server and Kafka Connect for tests: the helpers the benchmarks use
(bench/stack.py)."""

from bench.stack import Broker, Connect, Postgres, free_port

__all__ = ["Broker", "Connect", "Postgres", "free_port"]
