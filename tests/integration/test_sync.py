"""Documents sync between real pycrdt clients through the real server."""

from __future__ import annotations

import asyncio

from pycrdt import Array, Map

from tests.support.server import RunningServer, metric_value
from tests.support.waiting import eventually


async def test_concurrent_edits_from_several_clients_converge(connect):
    clients = [await connect("doc") for _ in range(4)]
    for round_ in range(20):
        for i, client in enumerate(clients):
            client.text.insert(0 if i % 2 else len(client.text), f"<{i}.{round_}>")
        await asyncio.sleep(0)  # let the edits interleave on the wire
    expected_pieces = {f"<{i}.{r}>" for i in range(4) for r in range(20)}

    def converged() -> bool:
        texts = {str(c.text) for c in clients}
        return len(texts) == 1 and all(p in texts.copy().pop() for p in expected_pieces)

    await eventually(converged, what="all clients hold the same text with every edit")


async def test_map_and_array_edits_converge(connect):
    a = await connect("doc")
    b = await connect("doc")
    a.map()["title"] = "Plan"
    b.array().append("first")
    a.map()["nested"] = Map({"done": False})
    b.array().append(Array([1, 2]))
    await eventually(lambda: a.map().to_py() == b.map().to_py() and "nested" in b.map())
    await eventually(lambda: a.array().to_py() == b.array().to_py() == ["first", [1.0, 2.0]])


async def test_rooms_are_isolated(connect):
    a = await connect("room-a")
    b = await connect("room-b")
    watcher = await connect("room-b")
    a.text.insert(0, "only in a")
    b.text.insert(0, "only in b")
    await eventually(lambda: str(watcher.text) == "only in b")
    # a's edit is durable and relayed back to a before we look at b's side again
    await eventually(lambda: a.received_updates >= 1)
    assert str(watcher.text) == "only in b"
    assert str(b.text) == "only in b"


async def test_sender_receives_its_own_update_back_after_it_is_durable(connect, server):
    a = await connect("doc")
    a.text.insert(0, "saved?")
    await eventually(lambda: a.received_updates == 1, what="echo of the client's own update")
    stored = await server.runtime.store.load("doc")
    assert stored.updates, "the echo arrived, so the update must be in the log"


async def test_stored_document_syncs_to_a_new_client(connect, server):
    writer = await connect("stored")
    writer.text.insert(0, "written earlier")
    writer.map()["k"] = "v"
    await eventually(writer.is_saved)
    await writer.close()
    registry = server.runtime.registry
    await eventually(lambda: "stored" not in registry.rooms, what="room unloaded after grace")
    reader = await connect("stored")
    assert str(reader.text) == "written earlier"
    assert reader.map()["k"] == "v"
    assert _loads(server) == 2


async def test_concurrent_first_joins_load_the_document_once(connect, server):
    clients = await asyncio.gather(*(connect("crowd") for _ in range(8)))
    assert _loads(server) == 1
    assert len(server.runtime.registry.rooms["crowd"].peers) == len(clients)


async def test_duplicate_updates_are_neither_stored_nor_relayed_again(connect, server):
    a = await connect("doc")
    b = await connect("doc")
    a.text.insert(0, "once")
    await eventually(lambda: str(b.text) == "once")
    before = b.received_updates
    # b resends everything it has: nothing new for the server
    from pycrdt import create_update_message

    await b.send_raw(create_update_message(b.doc.get_update()))
    a.text.insert(4, "!")
    await eventually(lambda: str(b.text) == "once!")
    assert b.received_updates == before + 1


def _loads(server: RunningServer) -> float:
    return metric_value(server.runtime.metrics, "collab_documents_loaded_total")
