"""Prometheus metrics: a registry per app, counted cheaply, served at `/metrics` to few.

Everything lives in the app's own `CollectorRegistry` (never the library's global one), so
several apps in one process (the tests) keep apart. Counters and histograms are updated where
things happen, never once per frame written; what the app already keeps (open sockets, frames
delivered, Redis, loop lag) is read only when Prometheus scrapes, by the functions given to
`Metrics.sample`.

`/metrics` answers a loopback client that did not come through a proxy, or a request with
`Authorization: Bearer <METRICS_TOKEN>`; anyone else gets the site's ordinary 404.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import ipaddress
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, Info, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.context import REQUEST_INFO_KEY, route_name
from common.health import LOOP_LAG_KEY
from common.pages import Page
from settings import SETTINGS_KEY, Settings
from storage import STORE_KEY
from storage.base import StorageUnavailable, Store

# Seconds; a store call takes from well under a millisecond (SQLite, a cached room) to seconds.
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Headers a reverse proxy adds: a loopback peer that sends one speaks for someone else.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
SWITCHING_PROTOCOLS = 101

Read = Callable[[], float | None]


class Metrics:
    """The app's metric objects, in a registry of their own."""

    def __init__(self, process: str | None = None) -> None:
        registry = self.registry = CollectorRegistry()
        # Names the process in per-process metrics: several share one Redis, maybe one host.
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self.http_requests = Counter(
            "chat_http_requests",
            "HTTP requests answered, by route name, method and status (101: a socket opened).",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "chat_http_request_duration_seconds",
            "Seconds from a request's arrival to its response's headers, by route name.",
            ["route"],
            registry=registry,
        )
        self.storage_duration = Histogram(
            "chat_storage_duration_seconds",
            "Seconds a call to the store took, by operation (collection.method).",
            ["operation"],
            buckets=STORAGE_BUCKETS,
            registry=registry,
        )
        self.storage_errors = Counter(
            "chat_storage_unavailable",
            "Calls to the store that found the database unavailable, by operation.",
            ["operation"],
            registry=registry,
        )
        self.messages_stored = Counter(
            "chat_messages_stored", "Messages stored by this process.", registry=registry
        )
        self.socket_closes = Counter(
            "chat_socket_closes",
            "WebSockets closed, by close code (none: the connection ended without one).",
            ["code"],
            registry=registry,
        )
        self.upload_bytes = Counter(
            "chat_upload_bytes", "Bytes of uploaded files stored.", registry=registry
        )
        Info(
            "chat_process",
            "This process: the `process` label of per-process metrics.",
            registry=registry,
        ).info({"process": self.process, "pid": str(os.getpid())})
        ProcessCollector(registry=registry)  # CPU, memory and file descriptors, from /proc
        self._sampled = _Sampled()
        registry.register(self._sampled)

    def sample(
        self,
        name: str,
        documentation: str,
        read: Read,
        *,
        counter: bool = False,
        labels: dict[str, str] | None = None,
    ) -> None:
        """Report a gauge (or counter) read at scrape time; `read` returning None skips it."""
        self._sampled.reads.append((name, documentation, read, counter, labels or {}))

    def socket_closed(self, code: int | None) -> None:
        """Count a closed WebSocket by its close code."""
        self.socket_closes.labels(close_code_label(code)).inc()

    def uploaded(self, nbytes: int) -> None:
        """Count the bytes of an uploaded file once it is stored (call it from the uploads code)."""
        if nbytes > 0:
            self.upload_bytes.inc(nbytes)

    def render(self, accept: str) -> tuple[bytes, str]:
        """Return the exposition the Accept header asks for (Prometheus text by default)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


METRICS_KEY = web.AppKey("metrics", Metrics)


class _Sampled(Collector):
    """The values `Metrics.sample` was given, read on each scrape."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str, Read, bool, dict[str, str]]] = []

    def describe(self) -> list[Metric]:
        return []  # nothing to check for clashes: the names are ours

    def collect(self) -> Iterator[Metric]:
        for name, documentation, read, counter, labels in self.reads:
            value = read()
            if value is None:
                continue
            family = CounterMetricFamily if counter else GaugeMetricFamily
            metric = family(name, documentation, labels=list(labels))
            metric.add_metric(list(labels.values()), value)
            yield metric


def close_code_label(code: int | None) -> str:
    """Name a close code for the `code` label: the standard ones as is, others as `other`."""
    if code is None:
        return "none"
    return str(code) if 1000 <= code <= 1015 else "other"  # clients choose 3000-4999 freely


def uploaded(app: web.Application, nbytes: int) -> None:
    """Count the bytes of a stored upload in `chat_upload_bytes_total`."""
    app[METRICS_KEY].uploaded(nbytes)


def setup_metrics(app: web.Application, settings: Settings) -> None:
    """Keep the app's metrics; with METRICS on, also time the store and count each response."""
    metrics = app[METRICS_KEY] = Metrics()
    if not settings.metrics:
        return
    instrument_store(app[STORE_KEY], metrics)
    app.on_response_prepare.append(count_response)
    lags = app[LOOP_LAG_KEY]
    metrics.sample(
        "chat_event_loop_lag_seconds",
        "How late the event loop woke up at its last probe (one a second).",
        lambda: lags[-1] if lags else 0.0,
    )
    metrics.sample(
        "chat_event_loop_lag_max_seconds",
        "The event loop's largest lag over the last minute.",
        lambda: max(lags, default=0.0),
    )


async def count_response(request: web.Request, response: web.StreamResponse) -> None:
    """Count a response as its headers go out, and time its request up to then."""
    metrics = request.app[METRICS_KEY]
    route = route_name(request)
    method = request.method if request.method in METHODS else "other"
    metrics.http_requests.labels(route, method, str(response.status)).inc()
    info = request.get(REQUEST_INFO_KEY)
    if info is not None and response.status != SWITCHING_PROTOCOLS:
        metrics.http_duration.labels(route).observe(time.perf_counter() - info.started)


def instrument_store(store: Store, metrics: Metrics) -> None:
    """Time every public coroutine method of the store's collections (users, messages, ...).

    The collections are the `Store` interface's attributes, so one added there is timed too.
    The wrappers go on the instances: both backends stay as they are.
    """
    for part in inspect.get_annotations(Store):
        collection = getattr(store, part, None)
        if collection is None:
            continue
        for name in dir(type(collection)):
            if name.startswith("_") or not inspect.iscoroutinefunction(
                getattr(type(collection), name)
            ):
                continue
            operation = f"{part}.{name}"
            call = _timed(
                getattr(collection, name),
                metrics.storage_duration.labels(operation).observe,
                metrics.storage_errors.labels(operation).inc,
            )
            if operation == "messages.add":  # (message, created): count what was stored
                call = _counting_stored(call, metrics.messages_stored.inc)
            setattr(collection, name, call)


def _timed(
    call: Callable[..., Awaitable[Any]],
    observe: Callable[[float], None],
    failed: Callable[[], None],
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(call)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        except StorageUnavailable:
            failed()
            raise
        finally:
            observe(time.perf_counter() - started)

    return timed


def _counting_stored(
    call: Callable[..., Awaitable[Any]], count: Callable[[], None]
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(call)
    async def add(*args: Any, **kwargs: Any) -> Any:
        result = await call(*args, **kwargs)
        if result[1]:
            count()
        return result

    return add


def is_loopback(remote: str | None) -> bool:
    """Say whether an address is a loopback one (127.0.0.0/8, ::1, or 127.x mapped into IPv6)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False  # no address (a Unix socket) or something else: not known to be local
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def may_scrape(request: web.Request, token: str) -> bool:
    """Say whether a request may read the metrics: the bearer token, or loopback unproxied.

    request.remote is the forwarded client's address under TRUST_PROXY; without it, a local
    proxy's requests come from loopback too, so any request naming a forwarded client is
    treated as remote.
    """
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        secret = given.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() == "bearer" and hmac.compare_digest(secret, token.encode()):
            return True
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    return is_loopback(request.remote)


class MetricsView(Page):
    """`/metrics` in the Prometheus text format, for loopback or the bearer token; else 404."""

    async def get(self) -> web.Response:
        settings = self.request.app[SETTINGS_KEY]
        if not settings.metrics or not may_scrape(self.request, settings.metrics_token):
            raise web.HTTPNotFound()
        body, content_type = self.request.app[METRICS_KEY].render(
            self.request.headers.get("Accept", "")
        )
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.headers["Cache-Control"] = "no-store"
        return response
