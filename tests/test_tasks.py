"""Background tasks end with their cleanup context, even when a library swallows a cancel."""

from __future__ import annotations

import asyncio

from common import tasks
from common.tasks import running


async def test_a_task_is_cancelled_when_the_block_ends() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async with running(forever()):
        await started.wait()
    # Nothing left behind: only this test's own task runs.
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_swallowed_cancel_is_repeated_until_the_task_ends(monkeypatch: object) -> None:
    monkeypatch.setattr(tasks, "CANCEL_AGAIN", 0.05)  # type: ignore[attr-defined]
    busy = asyncio.Event()
    swallowed = []

    async def swallows_one_cancel() -> None:
        # Like a worker whose library call ate the cancel: it goes back to waiting for work.
        while True:
            try:
                busy.set()
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    async def block() -> None:
        async with running(swallows_one_cancel()):
            await busy.wait()

    # Waited for without being cancelled (a cancel of the block would reach the worker too).
    outer = asyncio.create_task(block())
    done, _ = await asyncio.wait({outer}, timeout=5)
    if not done:  # the old single cancel: the block waits for ever
        outer.cancel()
    assert outer in done
    assert swallowed == [True]
