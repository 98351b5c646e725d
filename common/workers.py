"""A bounded pool of worker threads: CPU-heavy work off the event loop, refused when full."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every worker is taken and the wait queue is full: try again shortly."""


def _lower_priority(niceness: int) -> None:
    """Lower this worker thread's CPU priority so the event loop's thread runs first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed: the work still gets done
        pass


class Workers:
    """Run functions in threads of a pool of its own, at most `concurrency` at once.

    Up to `queue` more wait for a slot; beyond that `Busy` is raised at once rather than piling
    up memory and latency. On Linux each thread has its own niceness: the workers get
    `niceness` more than the process, so on a machine whose cores they fill the event loop
    still gets the CPU when it needs it.
    """

    def __init__(self, concurrency: int, queue: int, name: str, niceness: int) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=concurrency,
            thread_name_prefix=name,
            initializer=functools.partial(_lower_priority, niceness),
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = concurrency + queue
        self._admitted = 0  # running or waiting for a slot

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` in a worker, waiting for a slot; Busy when none is near."""
        if self._admitted >= self._limit:
            raise Busy
        self._admitted += 1
        try:
            async with self._slots:
                return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._admitted -= 1

    def close(self) -> None:
        """Let the workers end once their work is done."""
        self._pool.shutdown(wait=False, cancel_futures=True)
