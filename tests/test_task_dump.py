"""SIGUSR1 logs where every asyncio task waits, down to the innermost await (how a stalled agent was found)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cdp.logs import await_chain, log_tasks


async def _innermost(gate: asyncio.Event) -> None:
    await gate.wait()


async def _middle(gate: asyncio.Event) -> None:
    await _innermost(gate)


async def _agent_like(gate: asyncio.Event) -> None:
    async def numbers():  # an async generator in between, as in a Faust agent's `async for`
        await _middle(gate)
        yield 1

    async for _ in numbers():
        pass


def test_await_chain_follows_coroutines_and_async_generators(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> list[str]:
        gate = asyncio.Event()
        task = asyncio.create_task(_agent_like(gate), name="agent-like")
        await asyncio.sleep(0.01)
        chain = list(await_chain(task.get_coro()))
        with caplog.at_level(logging.WARNING, logger="cdp"):
            log_tasks()
        gate.set()
        await task
        return chain

    chain = asyncio.run(main())
    names = [where.rsplit(" ", 1)[-1] for where in chain if " " in where]
    # Outermost first, through the async generator, down to the wait on the event.
    assert names[0] == "_agent_like"
    assert names.index("numbers") < names.index("_middle") < names.index("_innermost") < names.index("wait")
    assert "agent-like" in caplog.text and "_innermost" in caplog.text
