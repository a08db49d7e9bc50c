"""Runs the scoring job on 1 node and on 3, and prints the speedup.

    python examples/python_scoring/run.py [--hits 200] [--shoal target/release/shoal]

Starts a local search server (http.server, in this process), N `shoal node`
processes with 1 slot each, and a Python worker beside each node; submits
`search_and_score` as a durable job and waits for it.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import shoal

HERE = Path(__file__).resolve().parent


def search_server(hits: int) -> ThreadingHTTPServer:
    class Search(BaseHTTPRequestHandler):
        def do_GET(self):
            documents = [{"id": i, "text": f"document {i} about {self.path}"} for i in range(hits)]
            body = json.dumps(documents).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Search)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_cluster(shoal_bin: str, nodes: int, data: Path) -> tuple[list[subprocess.Popen], list[str]]:
    processes, urls, join = [], [], []
    for index in range(nodes):
        node = subprocess.Popen(
            [shoal_bin, "node", "--slots", "1", "--http", "127.0.0.1:0",
             "--data-dir", str(data / f"node{index}"), *join],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        fields = dict(f.split("=", 1) for f in node.stdout.readline().split() if "=" in f)
        if not join:
            join = ["--join", fields["listen"].split(",")[0]]
        processes.append(node)
        urls.append(fields["http"])
    for url in urls:
        worker = subprocess.Popen(
            [sys.executable, "-m", "shoal.worker", "scoring", "--node", url],
            cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        worker.stderr.readline()  # "serving …"
        processes.append(worker)
    client = shoal.Client(urls[0])
    deadline = time.monotonic() + 30
    while client.status()["peers_alive"] < nodes - 1 or not _everywhere(client, nodes):
        if time.monotonic() > deadline:
            raise SystemExit("the cluster did not form in 30 s")
        time.sleep(0.2)
    return processes, urls


def _everywhere(client: shoal.Client, nodes: int) -> bool:
    """Whether every node's heartbeat says it has a worker serving `score`."""
    members = client.cluster()["members"]
    return len(members) == nodes and all(m["liveness"] == "alive" for m in members)


def run(shoal_bin: str, nodes: int, hits: int, server: str) -> float:
    with tempfile.TemporaryDirectory() as data:
        processes, urls = start_cluster(shoal_bin, nodes, Path(data))
        try:
            time.sleep(2)  # heartbeats carry every node's functions
            with shoal.Client(urls) as client:
                started = time.perf_counter()
                job = client.submit("search_and_score", {"server": server, "query": "fabric"})
                done = client.wait(job)
                took = time.perf_counter() - started
                assert done["state"] == "succeeded", done
                best = done["result"]["best"][0]
                print(f"{nodes} node(s): {done['result']['hits']} hits scored in {took:.2f} s; best: {best}")
                return took
        finally:
            for process in processes:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=200)
    parser.add_argument("--shoal", default=os.environ.get("SHOAL_BIN", "target/release/shoal"))
    args = parser.parse_args()
    server = search_server(args.hits)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    one = run(args.shoal, 1, args.hits, url)
    three = run(args.shoal, 3, args.hits, url)
    print(f"speedup on 3 nodes: {one / three:.2f}x")
    print(json.dumps({"one_node_s": one, "three_nodes_s": three, "speedup": one / three}))


if __name__ == "__main__":
    main()
