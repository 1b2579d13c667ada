"""The real Kafka broker for tests: the same helper the benchmarks use (bench/stack.py)."""

from bench.stack import Broker, free_port

__all__ = ["Broker", "free_port"]
