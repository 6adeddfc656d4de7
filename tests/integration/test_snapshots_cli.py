"""`collab snapshots ...` against a live server (through its API) and a bare database."""

from __future__ import annotations

import json

from pycrdt import Doc, Text

from collab.rooms.registry import build_doc
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate
from tests.support.server import run_collab, server_process
from tests.support.waiting import eventually
from tests.support.yclient import YClient


async def cli(*args: str) -> tuple[int, str, str]:
    return await run_collab("snapshots", *args)


async def cli_json(*args: str) -> dict:
    code, out, err = await cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def _edit(doc: Doc, text: str) -> bytes:
    """One update that sets the doc's text."""
    before = doc.get_state()
    ytext = doc.get("text", type=Text)
    with doc.transaction():
        del ytext[0 : len(ytext)]
        ytext.insert(0, text)
    return doc.get_update(before)


async def _stored_text(url: str, document: str) -> str:
    store = SqlStore(url)
    await store.open()
    try:
        return str(build_doc(await store.load(document), document).get("text", type=Text))
    finally:
        await store.close()


async def test_cli_on_a_bare_database(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'collab.db'}"
    store = SqlStore(url)
    await store.open()
    doc: Doc = Doc()
    await store.commit([AppendUpdate("notes", _edit(doc, "draft one"))])
    await store.close()

    saved = await cli_json("save", "notes", "--label", "one", "--author", "ada", "--database", url)
    assert (saved["kind"], saved["label"], saved["author"]) == ("named", "one", "ada")

    store = SqlStore(url)
    await store.open()
    await store.commit([AppendUpdate("notes", _edit(doc, "draft two"))])
    await store.close()

    listing = await cli_json("list", "notes", "--database", url)
    assert [s["id"] for s in listing["snapshots"]] == [saved["id"]]
    shown = await cli_json("show", "notes", str(saved["id"]), "--database", url)
    assert shown["content"] == {"text": "draft one"}

    restored = await cli_json("restore", "notes", str(saved["id"]), "--database", url)
    assert restored["changed"] is True
    assert await _stored_text(url, "notes") == "draft one"
    # the pre-restore version holds what was there before
    shown = await cli_json(
        "show", "notes", str(restored["pre_restore_snapshot_id"]), "--database", url
    )
    assert shown["content"] == {"text": "draft two"}

    code, out, err = await cli("list", "notes", "--database", url)
    assert code == 0 and "pre-restore" in out and "'one'" in out
    code, _, err = await cli("show", "nothing-here", "1", "--database", url)
    assert code == 1 and "not found" in err


async def test_cli_goes_through_a_running_server(tmp_path):
    async with server_process(tmp_path) as server:
        client = await YClient(server.ws_url("live")).connect()
        client.text.insert(0, "keep this")
        await eventually(lambda: client.received_updates == 1)
        base = f"http://127.0.0.1:{server.port}"
        saved = await cli_json("save", "live", "--label", "good", "--server", base)
        client.text.insert(len(client.text), " and not this")
        await eventually(lambda: client.received_updates == 2)

        listing = await cli_json("list", "live", "--server", base)
        assert listing["snapshots"][0]["id"] == saved["id"]

        # Only the database given: the CLI finds the server's lease and uses its API,
        # so the connected client receives the restore.
        code, _, err = await cli(
            "restore", "live", str(saved["id"]), "--database", server.database_url
        )
        assert code == 0, err
        assert "going through its API" in err
        await eventually(lambda: str(client.text) == "keep this")
        await client.close()

        code, _, err = await cli("show", "live", "424242", "--server", base)
        assert code == 1 and "404" in err
