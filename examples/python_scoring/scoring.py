"""The seed's job in Python: query a server for documents, score each one,
and fan the scoring out over the cluster.

Served by `python -m shoal.worker scoring` on every node; `run.py` starts
everything and times it.
"""

import hashlib
import json
import os
import urllib.request

import shoal

#: Rounds of hashing per scored document: about 20 ms of CPU on a laptop.
WORK = int(os.environ.get("SCORING_WORK", "20000"))


@shoal.function(name="score", concurrency=1)
def score(document):
    """A CPU-bound score: stands in for a model or a parser."""
    digest = document["text"].encode()
    for _ in range(WORK):
        digest = hashlib.sha256(digest).digest()
    return {"id": document["id"], "score": digest[0] / 255}


@shoal.function(name="search_and_score", concurrency=2)
def search_and_score(args, ctx):
    """Queries the search server, scores every hit across the cluster, and
    returns the best ones. Runs as a durable job; reports progress."""
    with urllib.request.urlopen(f"{args['server']}/search?q={args['query']}") as response:
        hits = json.load(response)
    ctx.progress(0.1, f"{len(hits)} hits")
    # Nested calls: this call's slot is free while the scores are computed.
    scores = ctx.map("score", hits, concurrency=args.get("in_flight", 64))
    ctx.progress(1.0, "scored")
    best = sorted(scores, key=lambda s: s["score"], reverse=True)[: args.get("top", 5)]
    return {"hits": len(hits), "best": best}
