"""Clients of a Shoal cluster over any node's HTTP API, sync and asyncio.

``Client`` is built on httpx, ``AsyncClient`` on aiohttp. Both take a list of nodes and fail over between them as the Rust client
does: a request that never reached a node goes to the next one; calls, reads
and job submissions (which carry an idempotency key) are also retried on
another node when a node answers ``unavailable``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

import aiohttp
import httpx

from .errors import ShoalError, Unreachable

DEFAULT_NODE = "http://127.0.0.1:7070"
#: Connections kept open to the nodes: enough for many concurrent calls
#: without reconnecting (httpx keeps 20 by default).
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256)
#: Calls per ``/v1/batch`` request (the node's limit is 10,000).
BATCH = 1000
FINISHED = {"succeeded", "dead_letter", "cancelled"}

Json = Any


def _nodes(nodes: str | Sequence[str]) -> list[str]:
    if isinstance(nodes, str):
        nodes = nodes.split(",")
    listed = [node.strip().rstrip("/") for node in nodes if node.strip()]
    if not listed:
        raise ValueError("give at least one node URL, e.g. http://127.0.0.1:7070")
    return listed


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _raise_for(response: httpx.Response) -> Json:
    """The JSON body of a successful response, or the node's error raised."""
    return _raise_for_parts(response.status_code, response.text)


def _raise_for_parts(status: int, text: str) -> Json:
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if 200 <= status < 300:
        return body
    if isinstance(body, dict) and "code" in body:
        raise ShoalError(body["code"], body.get("message", ""), status)
    raise ShoalError("http_error", f"HTTP {status}: {text[:200]}", status)


def _job_spec(function: str, args: Json, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"function": function, "args": args, **spec}
    body.setdefault("idempotency_key", uuid.uuid4().hex)
    return body


def _batch_results(function: str, offset: int, replies: list[dict[str, Any]]) -> list[Json]:
    results = []
    for index, reply in enumerate(replies):
        if "error" in reply:
            error = reply["error"]
            raise ShoalError(error["code"], f"{function} #{offset + index}: {error['message']}")
        results.append(reply.get("result"))
    return results


class _Events:
    """Server-sent events, a line at a time: ``feed`` returns (event name,
    JSON data) at the blank line that ends each."""

    def __init__(self) -> None:
        self.name, self.data = "message", []

    def feed(self, line: str) -> tuple[str, Json] | None:
        if line == "":
            event = (self.name, json.loads("\n".join(self.data))) if self.data else None
            self.name, self.data = "message", []
            return event
        if line.startswith("event:"):
            self.name = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].removeprefix(" "))
        return None


class Client:
    """A blocking client. ``Client("http://a:7070,http://b:7070")``."""

    def __init__(
        self,
        nodes: str | Sequence[str] = DEFAULT_NODE,
        *,
        token: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.nodes = _nodes(nodes)
        self._http = httpx.Client(headers=_headers(token), timeout=timeout, limits=LIMITS)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, body: Json = None, *, retry: bool = True) -> Json:
        last: Exception | None = None
        for node in self.nodes:
            try:
                response = self._http.request(method, node + path, json=body)
            except httpx.TransportError as error:
                last = error
                continue
            if retry and response.status_code == 503:
                last = ShoalError("unavailable", response.text, 503)
                continue
            return _raise_for(response)
        if isinstance(last, ShoalError):
            raise last
        raise Unreachable(f"no node answered ({', '.join(self.nodes)}): {last}")

    # -- calls

    def call(self, function: str, args: Json = None, *, timeout_ms: int | None = None) -> Json:
        """Runs ``function`` wherever the cluster places it; its result."""
        body: dict[str, Any] = {"args": args}
        if timeout_ms is not None:
            body["timeout_ms"] = timeout_ms
        return self._request("POST", f"/v1/call/{function}", body)["result"]

    def map(self, function: str, items: Iterable[Json], *, concurrency: int = 64) -> list[Json]:
        """``function`` over every item, at most ``concurrency`` at a time;
        results in order. Raises the first failure."""
        results: list[Json] = []
        chunk: list[Json] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == BATCH:
                results += self._batch(function, chunk, concurrency, len(results))
                chunk = []
        if chunk:
            results += self._batch(function, chunk, concurrency, len(results))
        return results

    def _batch(self, function: str, args: list[Json], concurrency: int, offset: int) -> list[Json]:
        body = {"calls": [{"function": function, "args": a} for a in args], "in_flight": concurrency}
        return _batch_results(function, offset, self._request("POST", "/v1/batch", body)["results"])

    # -- jobs

    def submit(self, function: str, args: Json = None, **spec: Any) -> int:
        """A durable job; ``spec`` takes ``labels``, ``priority``,
        ``max_attempts``, ``lease_ms``, ``idempotency_key``. Its id."""
        return self._request("POST", "/v1/jobs", _job_spec(function, args, spec))["id"]

    def job(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def watch(self, job_id: int) -> Iterator[dict[str, Any]]:
        """The job each time it changes, until it has finished."""
        for name, job in self._stream(f"/v1/jobs/{job_id}/events"):
            if name == "job":
                yield job
                if job["state"] in FINISHED:
                    return

    def _stream(self, path: str) -> Iterator[tuple[str, Json]]:
        """Server-sent events from the first node that answers."""
        for node in self.nodes:
            try:
                with self._http.stream("GET", node + path, timeout=None) as response:
                    if not response.is_success:
                        response.read()
                        _raise_for(response)
                    events = _Events()
                    for line in response.iter_lines():
                        event = events.feed(line)
                        if event:
                            yield event
                return
            except httpx.TransportError:
                continue
        raise Unreachable(f"no node answered ({', '.join(self.nodes)})")

    def subscribe(self, topic: str, *, history: bool = True) -> Iterator[dict[str, Any]]:
        """A topic's messages (``{"publisher", "seq", "value", …}``): the kept
        ones first (unless ``history=False``), then each as it comes."""
        query = "" if history else "?history=false"
        for name, message in self._stream(f"/v1/topics/{topic}/events{query}"):
            if name == "message":
                yield message

    def events(self) -> Iterator[dict[str, Any]]:
        """The node's telemetry events (joins, departures, alerts, …): recent
        ones first, then each as it happens."""
        for _, event in self._stream("/v1/events"):
            yield event

    def wait(self, job_id: int) -> dict[str, Any]:
        """The job once it has finished."""
        last: dict[str, Any] = {}
        for last in self.watch(job_id):
            pass
        return last

    # -- documents, queues, topics, the cluster

    def create(self, collection: str) -> None:
        """Creates a collection of documents."""
        self._request("PUT", f"/v1/db/{collection}", retry=False)

    def insert(self, collection: str, document: dict[str, Any]) -> str:
        return self._request("POST", f"/v1/db/{collection}/docs", document)["id"]

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/db/{collection}/docs/{doc_id}")

    def find(self, collection: str, filter: dict[str, Any] | None = None, **options: Any) -> list[dict[str, Any]]:
        body = {"filter": filter or {}, **options}
        return self._request("POST", f"/v1/db/{collection}/find", body)["documents"]

    def push(self, queue: str, *items: Json) -> int:
        return self._request("POST", f"/v1/queues/{queue}/push", {"items": list(items)}, retry=False)["pushed"]

    def pop(self, queue: str, *, timeout_ms: int = 0) -> Json:
        return self._request("POST", f"/v1/queues/{queue}/pop", {"timeout_ms": timeout_ms}, retry=False)["item"]

    def publish(self, topic: str, value: Json, **options: Any) -> dict[str, Any]:
        return self._request("POST", f"/v1/topics/{topic}", {"value": value, **options}, retry=False)

    def status(self) -> dict[str, Any]:
        return self._request("GET", "/v1/status")

    def cluster(self) -> dict[str, Any]:
        return self._request("GET", "/v1/cluster")


class AsyncClient:
    """The asyncio client: the same calls, awaited (on aiohttp, which keeps
    its speed with many calls in flight)."""

    def __init__(
        self,
        nodes: str | Sequence[str] = DEFAULT_NODE,
        *,
        token: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.nodes = _nodes(nodes)
        self._headers = _headers(token)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=LIMITS.max_connections or 256)
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout, connector=connector
            )
        return self._session

    async def _request(self, method: str, path: str, body: Json = None, *, retry: bool = True) -> Json:
        last: Exception | None = None
        for node in self.nodes:
            try:
                async with self._http().request(method, node + path, json=body) as response:
                    text = await response.text()
            except aiohttp.ClientConnectionError as error:
                last = error
                continue
            if retry and response.status == 503:
                last = ShoalError("unavailable", text, 503)
                continue
            return _raise_for_parts(response.status, text)
        if isinstance(last, ShoalError):
            raise last
        raise Unreachable(f"no node answered ({', '.join(self.nodes)}): {last}")

    async def call(self, function: str, args: Json = None, *, timeout_ms: int | None = None) -> Json:
        body: dict[str, Any] = {"args": args}
        if timeout_ms is not None:
            body["timeout_ms"] = timeout_ms
        return (await self._request("POST", f"/v1/call/{function}", body))["result"]

    async def map(self, function: str, items: Iterable[Json], *, concurrency: int = 64) -> list[Json]:
        listed = list(items)
        results: list[Json] = []
        for start in range(0, len(listed), BATCH):
            chunk = listed[start : start + BATCH]
            body = {"calls": [{"function": function, "args": a} for a in chunk], "in_flight": concurrency}
            reply = await self._request("POST", "/v1/batch", body)
            results += _batch_results(function, start, reply["results"])
        return results

    async def submit(self, function: str, args: Json = None, **spec: Any) -> int:
        return (await self._request("POST", "/v1/jobs", _job_spec(function, args, spec)))["id"]

    async def job(self, job_id: int) -> dict[str, Any]:
        return await self._request("GET", f"/v1/jobs/{job_id}")

    async def _stream(self, path: str) -> AsyncIterator[tuple[str, Json]]:
        for node in self.nodes:
            try:
                no_limit = aiohttp.ClientTimeout(total=None)
                async with self._http().get(node + path, timeout=no_limit) as response:
                    if response.status >= 300:
                        _raise_for_parts(response.status, await response.text())
                    events = _Events()
                    async for raw in response.content:
                        event = events.feed(raw.decode().rstrip("\r\n"))
                        if event:
                            yield event
                return
            except aiohttp.ClientConnectionError:
                continue
        raise Unreachable(f"no node answered ({', '.join(self.nodes)})")

    async def watch(self, job_id: int) -> AsyncIterator[dict[str, Any]]:
        async for name, job in self._stream(f"/v1/jobs/{job_id}/events"):
            if name == "job":
                yield job
                if job["state"] in FINISHED:
                    return

    async def subscribe(self, topic: str, *, history: bool = True) -> AsyncIterator[dict[str, Any]]:
        query = "" if history else "?history=false"
        async for name, message in self._stream(f"/v1/topics/{topic}/events{query}"):
            if name == "message":
                yield message

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        async for _, event in self._stream("/v1/events"):
            yield event

    async def wait(self, job_id: int) -> dict[str, Any]:
        last: dict[str, Any] = {}
        async for last in self.watch(job_id):
            pass
        return last

    async def create(self, collection: str) -> None:
        await self._request("PUT", f"/v1/db/{collection}", retry=False)

    async def insert(self, collection: str, document: dict[str, Any]) -> str:
        return (await self._request("POST", f"/v1/db/{collection}/docs", document))["id"]

    async def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/v1/db/{collection}/docs/{doc_id}")

    async def find(self, collection: str, filter: dict[str, Any] | None = None, **options: Any) -> list[dict[str, Any]]:
        body = {"filter": filter or {}, **options}
        return (await self._request("POST", f"/v1/db/{collection}/find", body))["documents"]

    async def push(self, queue: str, *items: Json) -> int:
        return (await self._request("POST", f"/v1/queues/{queue}/push", {"items": list(items)}, retry=False))["pushed"]

    async def pop(self, queue: str, *, timeout_ms: int = 0) -> Json:
        body = {"timeout_ms": timeout_ms}
        return (await self._request("POST", f"/v1/queues/{queue}/pop", body, retry=False))["item"]

    async def publish(self, topic: str, value: Json, **options: Any) -> dict[str, Any]:
        return await self._request("POST", f"/v1/topics/{topic}", {"value": value, **options}, retry=False)

    async def status(self) -> dict[str, Any]:
        return await self._request("GET", "/v1/status")

    async def cluster(self) -> dict[str, Any]:
        return await self._request("GET", "/v1/cluster")
