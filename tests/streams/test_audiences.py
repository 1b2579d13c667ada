"""Creating or deleting an audience waits until the definition has come back from its topic, and keeps the event
loop running meanwhile: in `cdp run` the collector answers requests on the same loop (unit: no broker, the
follower thread is stood in for by a timer thread applying the record)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable

from streams.audiences import AudienceDefinitions

ECHO_DELAY_S = 0.3  # how long the record takes to come back through the follower thread
UNREACHABLE = "127.0.0.1:1"  # never started: the definitions are fed by hand


class EchoingProducer:
    """Acknowledges at once; the record reaches the definitions from another thread a moment later, as the
    follower would deliver it."""

    def __init__(self, definitions: AudienceDefinitions) -> None:
        self.definitions = definitions

    async def send_many(self, records: Iterable[tuple[str, bytes | None, bytes | None]], timeout: float) -> None:
        for _topic, key, value in records:
            assert key is not None
            threading.Timer(ECHO_DELAY_S, self.definitions.apply, (key.decode(), value)).start()


def longest_stall(work: Callable[[], Awaitable[object]]) -> float:
    """The longest time the event loop went without running a 10 ms ticker while ``work`` ran."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        gaps: list[float] = []

        async def ticker() -> None:
            last = loop.time()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(loop.time() - last)
                last = loop.time()

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)
        await work()
        await asyncio.sleep(0.05)  # the ticker records the gap that ends when the loop runs again
        task.cancel()
        return max(gaps)

    return asyncio.run(main())


def test_create_waits_for_the_definition_without_blocking_the_loop() -> None:
    definitions = AudienceDefinitions(UNREACHABLE, "t.audiences")
    producer = EchoingProducer(definitions)
    created: list[dict[str, object]] = []

    async def create() -> None:
        rule = {"trait": "plan", "op": "eq", "value": "pro"}
        created.append(await definitions.create(producer, "Pro", "profile", rule, None, 1.0))  # type: ignore[arg-type]

    stall = longest_stall(create)
    assert definitions.get(str(created[0]["id"])) == created[0]  # create returned once the record was back
    assert stall < ECHO_DELAY_S / 2, f"the event loop stood still for {stall:.2f} s"


def test_delete_waits_for_the_tombstone_without_blocking_the_loop() -> None:
    definitions = AudienceDefinitions(UNREACHABLE, "t.audiences")
    definitions.apply("aud_1", b'{"id": "aud_1", "created_at_ms": 1}')
    producer = EchoingProducer(definitions)

    stall = longest_stall(lambda: definitions.delete(producer, "aud_1", 1.0))  # type: ignore[arg-type]
    assert definitions.get("aud_1") is None
    assert stall < ECHO_DELAY_S / 2, f"the event loop stood still for {stall:.2f} s"
