"""The client beyond calls: documents, the queue, topics and events, sync
and asyncio, and failover to the next node."""

from __future__ import annotations

import asyncio

import pytest

import shoal


def test_documents_queue_topics_and_events(start_node, client_of):
    node = start_node()
    client = client_of(node)
    client.create("notes")
    doc = client.insert("notes", {"text": "hello", "n": 1})
    assert client.get("notes", doc)["body"] == {"text": "hello", "n": 1}
    assert [d["id"] for d in client.find("notes", {"n": 1})] == [doc]

    assert client.push("work", {"job": 1}, {"job": 2}) == 2
    assert client.pop("work") == {"job": 1}

    client.publish("news", "first", retain=10)
    messages = client.subscribe("news")
    assert next(messages)["value"] == "first", "kept messages come first"

    events = client.events()
    assert "kind" in next(events)


def test_the_asyncio_client_has_the_same_data_calls(start_node):
    node = start_node()

    async def use() -> tuple[object, object, object]:
        async with shoal.AsyncClient(node.url) as client:
            await client.create("notes")
            doc = await client.insert("notes", {"n": 2})
            await client.push("work", "item")
            await client.publish("news", 1, retain=5)
            first = await anext(client.subscribe("news"))
            event = await anext(client.events())
            return (await client.get("notes", doc))["body"], await client.pop("work"), await client.find("notes"), first, event

    body, item, found, first, event = asyncio.run(use())
    assert (body, item, len(found)) == ({"n": 2}, "item", 1)
    assert first["value"] == 1
    assert "kind" in event


def test_a_dead_node_in_the_list_is_passed_over_and_errors_keep_their_codes(start_node):
    node = start_node()
    with shoal.Client(["http://127.0.0.1:9", node.url]) as client:
        assert client.call("echo", {"a": 1}) == {"a": 1}
    with shoal.Client("http://127.0.0.1:9") as client, pytest.raises(shoal.Unreachable):
        client.call("echo")
