"""Background tasks that live as long as a `cleanup_ctx`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

log = logging.getLogger(__name__)

# A library awaited inside a task can swallow a cancel (PyMongo's network layer was seen to, with
# the task then waiting on its queue for ever and the shutdown with it): the cancel is repeated
# this often until the task has ended.
CANCEL_AGAIN = 1.0  # seconds


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run a coroutine as a task while the block lasts; cancel it and wait for it after."""
    task = asyncio.create_task(coro)
    try:
        yield
    finally:
        await stop(task)


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait until it has ended, cancelling again if a cancel was swallowed."""
    asked = 0
    while not task.done():
        if asked:
            log.warning("task %s went on after a cancel; cancelling it again", task.get_name())
        task.cancel()
        asked += 1
        await asyncio.wait({task}, timeout=CANCEL_AGAIN)
    with contextlib.suppress(asyncio.CancelledError):
        await task
