"""Functions written in Python, served to a Shoal cluster by a worker process.

::

    # my_module.py
    import shoal

    @shoal.function(concurrency=4)
    def score(doc):
        return len(doc["text"])

    @shoal.function(name="report")
    async def report(args, ctx):
        ctx.progress(0.5, "half way")
        return "done"

    $ python -m shoal.worker my_module --node http://127.0.0.1:7070

The worker connects to its node's WebSocket (``/v1/workers``, the protocol
in ``docs/workers.md``), registers its functions, and runs the calls the
node sends it: sync functions on a thread pool, async ones on the event
loop, each function at most ``concurrency`` at a time. On SIGTERM it tells
the node to send no more, finishes what it runs (for at most
``--drain-timeout`` seconds), and exits 0; the node places the calls it
still held elsewhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import itertools
import json
import logging
import os
import threading
import types
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import websockets

from ..errors import ShoalError

log = logging.getLogger("shoal.worker")

#: Functions registered with :func:`function`, by name.
REGISTERED: dict[str, Function] = {}
#: The function every worker serves to run a job's shipped script.
PYTHON_SCRIPT = "shoal.python_script"
#: Scripts' calls a worker runs at once.
SCRIPT_CONCURRENCY = 4


@dataclass
class Function:
    name: str
    body: Callable[..., Any]
    concurrency: int
    wants_ctx: bool
    memoize: bool = False


def function(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    concurrency: int = 1,
    memoize: bool = False,
) -> Any:
    """Registers a function for workers to serve, under ``name`` (its own
    name by default), at most ``concurrency`` calls at a time per worker.
    It gets the call's arguments (any JSON value) and, if it has a parameter
    named ``ctx``, a :class:`Context`. ``memoize``: its result depends on
    its arguments alone, so the cluster may answer repeats from a cache."""

    def register(body: Callable[..., Any]) -> Callable[..., Any]:
        if concurrency < 1:
            raise ValueError("concurrency is at least 1")
        wants_ctx = "ctx" in inspect.signature(body).parameters
        registered = Function(name or body.__name__, body, concurrency, wants_ctx, memoize)
        REGISTERED[registered.name] = registered
        return body

    return register(fn) if fn is not None else register


class Context:
    """What a running function can do besides compute: report progress, and
    call other functions of the cluster. While it waits for those, its node
    slot is free (nested calls never block a worker's node)."""

    def __init__(self, worker: Worker, call_id: int) -> None:
        self._worker = worker
        self._id = call_id

    def progress(self, fraction: float, message: str = "") -> None:
        """Reports progress (0.0–1.0) of the durable job this call runs for."""
        self._worker._send_threadsafe(
            {"type": "progress", "id": self._id, "fraction": float(fraction), "message": message}
        )

    def submit(self, function: str, args: Any = None) -> concurrent.futures.Future[Any]:
        """Starts a nested call; its future resolves to the result or raises
        :class:`ShoalError`."""
        return self._worker._nested(self._id, function, args)

    def call(self, function: str, args: Any = None) -> Any:
        """A nested call, waited for (from a sync function)."""
        return self.submit(function, args).result()

    async def acall(self, function: str, args: Any = None) -> Any:
        """A nested call, awaited (from an async function)."""
        return await asyncio.wrap_future(self.submit(function, args))

    def map(self, function: str, items: Iterable[Any], *, concurrency: int = 64) -> list[Any]:
        """``function`` over every item as nested calls, at most
        ``concurrency`` in flight; results in order (from a sync function)."""
        window: deque[concurrent.futures.Future[Any]] = deque()
        results: list[Any] = []
        for item in items:
            if len(window) >= concurrency:
                results.append(window.popleft().result())
            window.append(self.submit(function, item))
        results += [future.result() for future in window]
        return results


def ws_url(node: str) -> str:
    base = node.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + "/v1/workers"
    return "ws://" + base.removeprefix("http://") + "/v1/workers"


class Worker:
    """Serves ``functions`` to the node at ``node`` until stopped."""

    def __init__(
        self,
        node: str,
        functions: dict[str, Function] | None = None,
        *,
        token: str | None = None,
        concurrency: int | None = None,
        drain_timeout: float = 30.0,
        cancel_grace: float = 10.0,
    ) -> None:
        self.node = node
        functions = functions if functions is not None else REGISTERED
        self.functions = {
            name: replace(f, concurrency=concurrency or f.concurrency) for name, f in functions.items()
        }
        self.functions[PYTHON_SCRIPT] = Function(PYTHON_SCRIPT, self._run_script, SCRIPT_CONCURRENCY, True)
        #: Shipped scripts loaded so far: their functions, by the script's hash.
        self.scripts: dict[str, dict[str, Function]] = {}
        self.scripts_lock = threading.Lock()
        self.token = token
        self.drain_timeout = drain_timeout
        self.cancel_grace = cancel_grace
        #: Calls running in a thread, which cannot be interrupted.
        self.in_threads: set[int] = set()
        self.running: dict[int, asyncio.Task[None]] = {}
        threads = sum(f.concurrency for f in self.functions.values()) or 1
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shoal-fn")
        self.stopping = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.nested: dict[int, concurrent.futures.Future[Any]] = {}
        self.nested_ids = itertools.count(1)
        self.nested_lock = threading.Lock()

    async def run(self) -> None:
        if not self.functions:
            raise ValueError("no functions to serve: decorate some with @shoal.function")
        self.loop = asyncio.get_running_loop()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with websockets.connect(
            ws_url(self.node), additional_headers=headers, max_size=32 * 1024 * 1024
        ) as ws:
            self.ws = ws
            await ws.send(json.dumps({
                "type": "register",
                "functions": [
                    {"name": f.name, "concurrency": f.concurrency, "memoize": f.memoize}
                    for f in self.functions.values()
                ],
            }))
            reply = json.loads(await ws.recv())
            if reply.get("type") != "registered":
                raise RuntimeError(f"the node refused the functions: {reply.get('message', reply)}")
            log.info("serving %s to %s", ", ".join(reply["functions"]), self.node)
            receiving = asyncio.create_task(self._receive())
            stopping = asyncio.create_task(self.stopping.wait())
            done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                await self._drain()
                receiving.cancel()
            else:
                stopping.cancel()
                receiving.result()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        """Finish what runs, take nothing new, then return from :meth:`run`."""
        self.stopping.set()

    async def _drain(self) -> None:
        await self.ws.send(json.dumps({"type": "drain"}))
        if self.running:
            log.info("finishing %d calls before stopping", len(self.running))
            _, late = await asyncio.wait(set(self.running.values()), timeout=self.drain_timeout)
            for task in late:
                task.cancel()
        await self.ws.close()

    async def _receive(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "call":
                call_id = message["id"]
                self.running[call_id] = asyncio.create_task(self._run(call_id, message["function"], message.get("args")))
            elif kind == "cancel":
                call_id = message["id"]
                task = self.running.pop(call_id, None)
                if task:
                    task.cancel()
                if call_id in self.in_threads:
                    self.loop.call_later(self.cancel_grace, self._give_up_on, call_id)
            elif kind in ("returned", "failed"):
                with self.nested_lock:
                    future = self.nested.pop(message["id"], None)
                if future is None:
                    continue
                if kind == "returned":
                    future.set_result(message["result"])
                else:
                    future.set_exception(ShoalError(message["code"], message["message"]))
            elif kind == "refused":
                log.warning("the node refused a message: %s", message.get("message"))

    def _run_script(self, args: dict[str, Any], ctx: Context) -> Any:
        """Runs ``args["function"]`` of a script shipped with a job, loading
        the script (``name``, ``source``) the first time its hash is seen."""
        functions = self._load_script(args["name"], args["source"])
        name = args["function"]
        if name not in functions:
            raise LookupError(f"{args['name']} defines no @shoal.function named {name!r} (it has {sorted(functions)})")
        target = functions[name]
        extra = {"ctx": ctx} if target.wants_ctx else {}
        if inspect.iscoroutinefunction(target.body):
            assert self.loop is not None
            return asyncio.run_coroutine_threadsafe(target.body(args.get("args"), **extra), self.loop).result()
        return target.body(args.get("args"), **extra)

    def _load_script(self, name: str, source: str) -> dict[str, Function]:
        digest = hashlib.sha256(source.encode()).hexdigest()
        with self.scripts_lock:
            if digest not in self.scripts:
                module = types.ModuleType(f"shoal_script_{digest[:16]}")
                module.__file__ = name
                before = dict(REGISTERED)
                try:
                    exec(compile(source, name, "exec"), module.__dict__)
                    added = {k: v for k, v in REGISTERED.items() if before.get(k) is not v}
                finally:
                    # The script's functions are its own, not the worker's.
                    REGISTERED.clear()
                    REGISTERED.update(before)
                self.scripts[digest] = added
                log.info("loaded %s (%s…): %s", name, digest[:12], ", ".join(sorted(added)) or "no functions")
            return self.scripts[digest]

    def _in_thread(self, call_id: int, registered: Function, args: Any, extra: dict[str, Any]) -> Callable[[], Any]:
        def run() -> Any:
            try:
                return registered.body(args, **extra)
            finally:
                self.in_threads.discard(call_id)

        return run

    def _give_up_on(self, call_id: int) -> None:
        """A cancelled call still runs in its thread after the grace time:
        a Python thread cannot be stopped, so the worker exits (its node or
        supervisor starts another; its other calls run again elsewhere)."""
        if call_id in self.in_threads:
            log.error("call %d ignored its cancellation for %.0f s; the worker exits", call_id, self.cancel_grace)
            os._exit(70)

    def _send_soon(self, message: dict[str, Any]) -> None:
        asyncio.get_running_loop().create_task(self.ws.send(json.dumps(message)))

    def _send_threadsafe(self, message: dict[str, Any]) -> None:
        assert self.loop is not None, "the worker runs"
        self.loop.call_soon_threadsafe(self._send_soon, message)

    def _nested(self, parent: int, function: str, args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self.nested_lock:
            nested_id = next(self.nested_ids)
            self.nested[nested_id] = future
        self._send_threadsafe(
            {"type": "call", "id": nested_id, "parent": parent, "function": function, "args": args}
        )
        return future

    async def _run(self, call_id: int, name: str, args: Any) -> None:
        loop = asyncio.get_running_loop()
        try:
            registered = self.functions[name]
            extra = {"ctx": Context(self, call_id)} if registered.wants_ctx else {}
            if inspect.iscoroutinefunction(registered.body):
                result = await registered.body(args, **extra)
            else:
                # The thread takes itself out of `in_threads` when it ends.
                self.in_threads.add(call_id)
                result = await loop.run_in_executor(self.pool, self._in_thread(call_id, registered, args, extra))
            reply = {"type": "result", "id": call_id, "result": result}
            text = json.dumps(reply)
        except asyncio.CancelledError:
            return
        except Exception as error:  # the function's failure is the call's
            text = json.dumps({"type": "error", "id": call_id, "message": f"{type(error).__name__}: {error}"})
        finally:
            self.running.pop(call_id, None)
        await self.ws.send(text)
