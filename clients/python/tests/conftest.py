"""Real `shoal node` processes and real worker processes for the tests.

The node binary is $SHOAL_BIN, or the workspace's release build.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import shoal

HERE = Path(__file__).parent
SHOAL_BIN = os.environ.get("SHOAL_BIN", str(HERE.parents[2] / "target" / "release" / "shoal"))


@dataclass
class NodeProcess:
    process: subprocess.Popen[str]
    url: str
    listen: str
    peer_id: str


def wait_for(what: str, check: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # keep trying until the deadline
            last = error
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s (last: {last!r})")


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def start(*args: str) -> NodeProcess:
        data = tmp_path / f"node{len(started)}"
        process = subprocess.Popen(
            [SHOAL_BIN, "node", "--heartbeat-ms", "200", "--http", "127.0.0.1:0", "--data-dir", str(data), *args],
            cwd=HERE,  # where the workers a node starts find sample_functions
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        fields = dict(f.split("=", 1) for f in process.stdout.readline().split() if "=" in f)
        node = NodeProcess(process, fields["http"], fields["listen"].split(",")[0], fields["peer_id"])
        started.append(node)
        return node

    yield start
    for node in started:
        node.process.kill()
        node.process.wait()


@pytest.fixture
def start_worker() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts `python -m shoal.worker sample_functions` against a node and
    waits until it serves."""
    started: list[subprocess.Popen[str]] = []

    def start(node: NodeProcess, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "shoal.worker", "sample_functions", "--node", node.url, *args],
            cwd=HERE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "serving" in line, f"the worker did not start: {line}{process.stderr.read()}"
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()


@pytest.fixture
def client_of() -> Iterator[Callable[[NodeProcess], shoal.Client]]:
    clients: list[shoal.Client] = []

    def make(node: NodeProcess) -> shoal.Client:
        client = shoal.Client(node.url, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
