"""Functions written in Python, served by worker processes, called through
any node as if they were native; workers killed and stopped mid-call."""

from __future__ import annotations

import asyncio
import os
import sys
import signal
import threading
import time

import pytest
from conftest import wait_for

import shoal


def two_nodes(start_node, client_of):
    first = start_node()
    second = start_node("--join", first.listen)
    client = client_of(second)
    wait_for("the nodes to see each other", lambda: client.status()["peers_alive"] == 1)
    return first, second, client


def test_a_python_function_is_called_through_any_node(start_node, start_worker, client_of):
    first, _second, client = two_nodes(start_node, client_of)
    worker = start_worker(first)
    # The node without workers learns of the function from the other's heartbeat.
    assert wait_for("the function to be known", lambda: client.call("square", 7)) == 49
    assert client.call("py.where") == worker.pid
    assert client.map("square", range(300), concurrency=32) == [x * x for x in range(300)]


def test_errors_carry_the_exception_and_stable_codes(start_node, start_worker, client_of):
    node = start_node()
    start_worker(node)
    client = client_of(node)
    with pytest.raises(shoal.ShoalError) as raised:
        client.call("fails", {"why": 1})
    assert raised.value.code == "function_failed"
    assert "ValueError: no good: {'why': 1}" in raised.value.message
    with pytest.raises(shoal.ShoalError) as raised:
        client.call("no.such.function")
    assert raised.value.code == "unknown_function"
    with pytest.raises(shoal.ShoalError) as raised:
        client.map("fails", [1, 2])
    assert raised.value.code == "function_failed"


def test_a_python_job_reports_progress_and_its_result(start_node, start_worker, client_of):
    node = start_node()
    start_worker(node)
    client = client_of(node)
    job_id = client.submit("py.steps", {"count": 4, "ms": 300})
    seen = [job for job in client.watch(job_id)]
    assert seen[-1]["state"] == "succeeded"
    assert seen[-1]["result"] == 4
    fractions = [job["progress"] for job in seen]
    assert any(0 < f < 1 for f in fractions), fractions
    assert fractions == sorted(fractions)


def test_a_call_whose_worker_is_killed_runs_again_on_another(start_node, start_worker, client_of):
    node = start_node()
    client = client_of(node)
    first = start_worker(node)
    outcome: dict[str, object] = {}
    call = threading.Thread(target=lambda: outcome.update(pid=client.call("py.slow", 2.0)))
    call.start()
    time.sleep(0.5)  # the call now runs in the first worker, the only one
    second = start_worker(node)
    first.send_signal(signal.SIGKILL)
    call.join(timeout=20)
    assert outcome.get("pid") == second.pid, outcome


def test_a_call_whose_only_worker_dies_fails_clearly(start_node, start_worker, client_of):
    node = start_node()
    client = client_of(node)
    worker = start_worker(node)
    errors: list[shoal.ShoalError] = []

    def call() -> None:
        try:
            client.call("py.slow", 5.0)
        except shoal.ShoalError as error:
            errors.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)
    worker.send_signal(signal.SIGKILL)
    thread.join(timeout=20)
    assert [e.code for e in errors] == ["unavailable"], errors


def test_sigterm_lets_running_calls_finish_then_exits_cleanly(start_node, start_worker, client_of):
    node = start_node()
    client = client_of(node)
    worker = start_worker(node)
    outcome: dict[str, object] = {}
    call = threading.Thread(target=lambda: outcome.update(pid=client.call("py.slow", 1.0)))
    call.start()
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    call.join(timeout=20)
    assert outcome.get("pid") == worker.pid
    assert worker.wait(timeout=10) == 0
    with pytest.raises(shoal.ShoalError) as raised:
        client.call("square", 2)
    assert raised.value.code == "unknown_function", "its functions left with it"


def test_the_asyncio_client(start_node, start_worker):
    node = start_node()
    start_worker(node)

    async def use() -> tuple[object, list[object], dict[str, object]]:
        async with shoal.AsyncClient(node.url) as client:
            job = await client.submit("py.steps", {"count": 2, "ms": 50})
            return await client.call("square", 9), await client.map("square", [1, 2, 3]), await client.wait(job)

    square, squares, job = asyncio.run(use())
    assert (square, squares) == (81, [1, 4, 9])
    assert (job["state"], job["result"]) == ("succeeded", 2)


def test_a_memoized_python_function_runs_once_per_argument(start_node, start_worker, client_of):
    node = start_node()
    start_worker(node)
    client = client_of(node)
    first = client.call("py.counted", 5)
    assert client.call("py.counted", 5) == first, "answered from the cache"
    assert client.call("py.counted", 6)["run"] == first["run"] + 1


def test_nested_calls_from_python_free_the_slot_while_they_wait(start_node, start_worker, client_of):
    # One slot: a fan-out that held it while waiting would wait for ever.
    node = start_node("--slots", "1")
    start_worker(node)
    client = client_of(node)
    assert client.call("py.fan", 50) == sum(i * i for i in range(50))
    assert client.call("py.fan_async", 5) == [0, 1, 4, 9, 16]
    with pytest.raises(shoal.ShoalError) as raised:
        client.call("py.calls_nothing")
    assert raised.value.code == "function_failed"
    assert "unknown_function" in raised.value.message


def test_a_node_started_with_python_workers_keeps_them_running(start_node, client_of):
    node = start_node("--python", "2", "--python-module", "sample_functions", "--python-bin", sys.executable)
    client = client_of(node)
    def serving() -> set[int]:
        # Calls at once: each worker runs one py.where at a time.
        return set(client.map("py.where", [None] * 40, concurrency=8))

    pids = wait_for("two workers serving", lambda: len(now := serving()) == 2 and now)
    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)
    # The node starts it again; calls keep working meanwhile.
    wait_for("a new worker in the dead one's place",
             lambda: victim not in (now := serving()) and len(now) == 2,
             timeout=30)
    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(timeout=40) == 0
    for pid in pids - {victim}:
        wait_for(f"worker {pid} to have exited", lambda pid=pid: not _alive(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by the stopped node) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_a_runaway_call_times_out_and_its_worker_makes_way(start_node, start_worker, client_of):
    node = start_node()
    worker = start_worker(node, "--cancel-grace", "1")
    client = client_of(node)
    with pytest.raises(shoal.ShoalError) as raised:
        client.call("py.spin", timeout_ms=500)
    assert raised.value.code == "deadline_exceeded"
    # A Python thread cannot be stopped: once the grace time is over, the
    # worker exits so that its supervisor can start a fresh one.
    assert worker.wait(timeout=10) == 70


def test_memory_beyond_the_workers_limit_fails_the_call_not_the_worker(start_node, start_worker, client_of):
    node = start_node()
    start_worker(node, "--memory-mb", "400")
    client = client_of(node)
    with pytest.raises(shoal.ShoalError) as raised:
        client.call("py.hog", 2000)
    assert raised.value.code == "function_failed"
    assert "MemoryError" in raised.value.message
    assert client.call("py.hog", 10) == 10 * 1024 * 1024, "the worker serves on"
