"""Python scripts shipped with durable jobs, run by whichever worker takes
the job, loaded by their hash."""

from __future__ import annotations

from conftest import wait_for

import shoal

SCRIPT = '''
import shoal

@shoal.function(name="total")
def total(numbers, ctx):
    ctx.progress(0.5, "squaring")
    return sum(ctx.map("square", numbers))

@shoal.function(name="greet")
async def greet(who):
    return f"hello {who}"
'''


def finished(client: shoal.Client, job_id: int) -> dict:
    return client.wait(job_id)


def test_a_job_ships_its_python_script_to_a_node_that_never_saw_it(start_node, start_worker, client_of):
    first = start_node()
    second = start_node("--join", first.listen)
    start_worker(first)
    client = client_of(second)
    wait_for("the nodes to see each other", lambda: client.status()["peers_alive"] == 1)
    script = {"name": "job.py", "source": SCRIPT}
    job = finished(client, client.submit("total", [1, 2, 3], script=script))
    assert (job["state"], job["result"]) == ("succeeded", 14), job
    job = finished(client, client.submit("greet", "world", script=script))
    assert job["result"] == "hello world"
    # The script's functions are the job's, not the worker's.
    try:
        client.call("total", [1])
        raise AssertionError("a script's function became a node function")
    except shoal.ShoalError as error:
        assert error.code == "unknown_function"


def test_a_broken_script_dead_letters_its_job_with_the_python_error(start_node, start_worker, client_of):
    node = start_node()
    start_worker(node)
    client = client_of(node)
    broken = {"name": "broken.py", "source": "def oops(:\n"}
    job = finished(client, client.submit("oops", None, script=broken, max_attempts=1))
    assert job["state"] == "dead_letter"
    assert "SyntaxError" in job["error"] and "broken.py" in job["error"], job["error"]
    missing = {"name": "empty.py", "source": "x = 1\n"}
    job = finished(client, client.submit("nothing", None, script=missing, max_attempts=1))
    assert "defines no @shoal.function named 'nothing'" in job["error"], job["error"]
