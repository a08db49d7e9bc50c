"""Functions the tests serve through `python -m shoal.worker`."""

import asyncio
import os
import time

import shoal


@shoal.function(concurrency=4)
def square(x):
    return x * x


@shoal.function(name="py.where")
def where(_args):
    return os.getpid()


@shoal.function
def fails(args):
    raise ValueError(f"no good: {args}")


@shoal.function(name="py.slow", concurrency=2)
def slow(seconds):
    time.sleep(seconds)
    return os.getpid()


@shoal.function(name="py.steps")
async def steps(args, ctx):
    for step in range(1, args["count"] + 1):
        await asyncio.sleep(args["ms"] / 1000)
        ctx.progress(step / args["count"], f"step {step}")
    return args["count"]


RUNS = 0


@shoal.function(name="py.counted", memoize=True)
def counted(x):
    global RUNS
    RUNS += 1
    return {"x": x, "run": RUNS}


@shoal.function(name="py.fan", concurrency=2)
def fan(n, ctx):
    """Nested calls: the sum of squares of 0..n, squared elsewhere."""
    return sum(ctx.map("square", range(n), concurrency=8))


@shoal.function(name="py.fan_async")
async def fan_async(n, ctx):
    return [await ctx.acall("square", i) for i in range(n)]


@shoal.function(name="py.calls_nothing")
def calls_nothing(_args, ctx):
    return ctx.call("no.such.function")


@shoal.function(name="py.spin")
def spin(_args):
    """Never returns: only the worker's exit stops it."""
    while True:
        pass


@shoal.function(name="py.hog")
def hog(megabytes):
    return len(bytearray(megabytes * 1024 * 1024))
