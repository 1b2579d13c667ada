"""An unfinished stitch batch is never committed (unit, Faust's own Message and ack path, no broker)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.transport.consumer import ConsumerMessage

from streams.app import _withhold_acks


class RecordingConsumer:
    """Stands in for Faust's consumer at the end of the ack path: what reaches it is committed later."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: ConsumerMessage) -> bool:
        self.acked.append(message.offset)
        return True


def _events(offsets: range) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(message=ConsumerMessage("t.identity.ops", 0, o, 0.0, 0, None, b"k", b"{}", None))
        for o in offsets
    ]


def test_a_finished_batch_is_acked() -> None:
    consumer = RecordingConsumer()
    for event in _events(range(10, 13)):  # what take_events does after the loop body
        event.message.ack(consumer)
    assert consumer.acked == [10, 11, 12]


def test_an_unfinished_batch_is_not_acked_when_take_events_closes() -> None:
    # The agent was cancelled mid-batch: take_events' `finally` still acks every event of the batch, and the
    # consumer commits acked offsets as it stops. Withheld, none of them reaches the consumer's bookkeeping.
    consumer = RecordingConsumer()
    events = _events(range(10, 13))
    _withhold_acks(events)  # type: ignore[arg-type]
    for event in events:
        event.message.ack(consumer)
    assert consumer.acked == []
