"""``python -m shoal.worker MODULE… --node URL``: serves the modules'
``@shoal.function`` functions until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import resource
import signal
import sys

from . import REGISTERED, Worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shoal.worker",
        description="Serve the @shoal.function functions of a module to a Shoal node.",
    )
    parser.add_argument("modules", nargs="+", metavar="module", help="modules to import, e.g. my_package.jobs")
    parser.add_argument("--node", default=os.environ.get("SHOAL_NODE", "http://127.0.0.1:7070"))
    parser.add_argument("--concurrency", type=int, help="calls of each function at a time (overrides the decorators)")
    parser.add_argument("--token-file", help="the node's API token, if it has one (or SHOAL_API_TOKEN)")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish calls on SIGTERM")
    parser.add_argument(
        "--cancel-grace", type=float, default=10.0,
        help="seconds a cancelled call (deadline passed) may go on in its thread before the worker exits",
    )
    parser.add_argument("--memory-mb", type=int, help="the worker's address-space limit (RLIMIT_AS), in MB")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if args.memory_mb:
        limit = args.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.path.insert(0, os.getcwd())
    for module in args.modules:
        importlib.import_module(module)
    token = os.environ.get("SHOAL_API_TOKEN")
    if args.token_file:
        with open(args.token_file) as file:
            token = file.read().strip()

    async def serve() -> None:
        worker = Worker(
            args.node,
            REGISTERED,
            token=token,
            concurrency=args.concurrency,
            drain_timeout=args.drain_timeout,
            cancel_grace=args.cancel_grace,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        await worker.run()

    asyncio.run(serve())


main()
