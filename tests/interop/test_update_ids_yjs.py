"""What the npm Yjs library encodes, collab's update reader reads the same as
yrs applies it: the clock ranges each update creates, for every kind of content
a Yjs client makes (attribution and the client-id check read them)."""

from __future__ import annotations

import json
import subprocess

from pycrdt import Doc

from collab.protocol.codec import decode_state_vector
from collab.protocol.update_ids import update_ids
from tests.support.nodeclient import INTEROP_DIR, require_node

SCRIPT = """
import * as Y from 'yjs'
const a = new Y.Doc()
const out = []
a.on('update', (u) => out.push(Buffer.from(u).toString('hex')))
const t = a.getText('content')
t.insert(0, 'h\\u00e9llo \\u{1F600} world')
t.format(0, 3, { bold: true })
t.insertEmbed(2, { image: 'x.png' })
a.getMap('m').set('k', { nested: [1, 2.5, 'x', null, true, 2 ** 40, -3] })
a.getArray('arr').push([1, 'two', new Uint8Array([1, 2, 3])])
const sub = new Y.Map(); a.getArray('arr').push([sub]); sub.set('z', 'y')
a.getXmlFragment('xml').insert(0, [new Y.XmlElement('p'), new Y.XmlText('x')])
t.delete(1, 4)
console.log(JSON.stringify(out))
"""


def test_every_kind_of_content_a_yjs_client_makes_is_read_as_yrs_applies_it() -> None:
    require_node()
    done = subprocess.run(
        ["node", "--input-type=module", "-e", SCRIPT],
        cwd=INTEROP_DIR,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    updates = [bytes.fromhex(h) for h in json.loads(done.stdout)]
    doc: Doc = Doc()
    for update in updates:
        before = decode_state_vector(doc.get_state())
        doc.apply_update(update)
        after = decode_state_vector(doc.get_state())
        expected = {c: (before.get(c, 0), e) for c, e in after.items() if e > before.get(c, 0)}
        assert update_ids(update).created == expected
    assert update_ids(updates[-1]).deleted >= 4  # the last one only deletes
