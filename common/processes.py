"""Several worker processes on one port: a parent starts them, watches them and stops them.

Each worker is a fresh interpreter (multiprocessing's `spawn`) that serves the whole app on the
same port with SO_REUSEPORT, so the kernel spreads new connections over them. The parent serves
nothing: it forwards SIGTERM/SIGINT to every worker once and waits for them. A worker that fails
(exits non-zero or is killed) is logged and takes the others down with it (exit code 1), so the
supervisor (systemd, Heroku) restarts the whole set rather than it running on smaller unnoticed; a
worker stopped by a signal of its own stops the others as the parent's signal would (exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TypeVar

from aiohttp import web

log = logging.getLogger("chat.workers")

S = TypeVar("S")
STOP_TIMEOUT = 20.0  # seconds for a worker's graceful stop (5 s of requests plus closing)
PR_SET_PDEATHSIG = 1
CLEAN = (0, -signal.SIGTERM)  # a worker's exit codes after a stop it was asked for


class Stopping(Exception):
    """The parent was asked to stop (SIGTERM or SIGINT)."""


class PortInUse(Exception):
    """Something already listens on the port."""


def check_port(host: str, port: int) -> None:
    """Raise PortInUse when a listener holds host:port (SO_REUSEPORT would silently share it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortInUse(f"cannot resolve HOST {host!r}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"{host}:{port} is already in use") from None
            raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _worker(serve: Callable[[S], None], settings: S, parent: int) -> None:
    """Run one worker: out of the terminal's process group, ended with its parent."""
    # Ctrl-C reaches the terminal's whole process group: let only the parent take it (it
    # forwards SIGTERM), so stopping is its decision and the log tells one story.
    os.setpgid(0, 0)
    with contextlib.suppress(AttributeError, OSError):  # Linux only: a SIGKILLed parent
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        return
    serve(settings)


async def stop_once(app: web.Application) -> None:
    """Make a worker stop on its first SIGTERM/SIGINT and ignore the rest (an `on_startup` hook).

    Heroku signals every process of a dyno, and the parent forwards its own signal too: aiohttp's
    handler would raise again in the middle of the shutdown, cutting the sockets' 1001 short.
    """
    loop = asyncio.get_running_loop()
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if stopping:  # two signals read at once both call this, whatever the handler is now
            return
        stopping = True
        raise web.GracefulExit()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)  # replaces aiohttp's handler, added before startup


class _Signals:
    """Raise Stopping in the parent on its first SIGTERM/SIGINT; ignore the later ones."""

    def __init__(self) -> None:
        self.received = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.received:
            self.received = True
            raise Stopping(signal.Signals(signum).name)


def _stop(workers: list[BaseProcess]) -> int:
    """Send SIGTERM to the running workers, wait for them; return 0 when all exited cleanly."""
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it ended just now
                os.kill(worker.pid, signal.SIGTERM)
    failed = 0
    for number, worker in enumerate(workers, start=1):
        worker.join(STOP_TIMEOUT)
        if worker.is_alive():
            log.error(
                "worker %d (pid %s) did not stop in %g s; killed", number, worker.pid, STOP_TIMEOUT
            )
            worker.kill()
            worker.join(5)
            failed += 1
        elif worker.exitcode not in CLEAN:
            failed += 1
    return 1 if failed else 0


def run_workers(serve: Callable[[S], None], settings: S, count: int) -> int:
    """Start `count` workers running `serve(settings)`; return the exit code once all stopped."""
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    signals = _Signals()
    try:
        for number in range(1, count + 1):
            worker = context.Process(
                target=_worker, args=(serve, settings, os.getpid()), name=f"worker-{number}"
            )
            worker.start()
            workers.append(worker)
            log.info("worker %d of %d started (pid %d)", number, count, worker.pid)
        sentinels = {worker.sentinel: number for number, worker in enumerate(workers, start=1)}
        (ended, *_) = multiprocessing.connection.wait(list(sentinels))
        number = sentinels[ended]  # type: ignore[index]
        worker = workers[number - 1]
        worker.join()
        signals.received = True  # from now on a signal changes nothing: the stop is under way
        if worker.exitcode in CLEAN:  # it was sent SIGTERM itself (Heroku signals every process)
            log.info("worker %d (pid %s) stopped; stopping the others", number, worker.pid)
            code = _stop(workers)
            log.info("all workers stopped")
            return code
        log.error(
            "worker %d (pid %s) exited with code %s; stopping the others",
            number,
            worker.pid,
            worker.exitcode,
        )
        _stop(workers)
        return 1
    except Stopping as exc:
        log.info("%s: stopping %d workers", exc, len(workers))
        code = _stop(workers)
        log.info("all workers stopped")
        return code
