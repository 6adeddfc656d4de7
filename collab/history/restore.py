"""Restore a live document to a snapshot's content, as new operations.

A CRDT cannot be rolled back by replacing its state: every client still holds
the newer items and would merge them straight back. So a restore is an edit
like any other: the difference between the current content and the snapshot's,
applied to the live Doc in ONE transaction (origin "restore"), which the room
stores and relays as one update. Concurrent edits merge with it as usual.

The difference is kept small on purpose: whatever is unchanged keeps its Yjs
items, so cursors (relative positions) and concurrent edits anchored there stay
where they are. Text is diffed by character (`collab.history.textdiff`), then its
formatting is made equal run by run; map entries are set or deleted only when
they differ; array elements are matched by a fingerprint of their content and
only the unmatched ones are deleted or inserted. A nested shared type is
restored in place when the current value is the same kind of type, otherwise it
is replaced by a copy built as prelim types (types stay types).

Root types come from `collab.content.root_kinds` of the snapshot; a root the
snapshot lacks or holds empty is emptied according to its current kind.

Never touched: XML roots (Y.XmlFragment/XmlElement, as y-prosemirror uses; the
inference reads them as empty). XML nodes and subdocuments nested in maps,
arrays or texts are never copied: in a map or array, the ones the snapshot lacks
are deleted and the others left alone; embedded in a text, they are removed.
Other text embeds are kept, deleted or inserted like characters, compared by
value. A string embed looks like characters in `Text.diff()`; when it cannot be
told apart for certain, that one text is left as it is (and a warning logged).

Where it runs: `restore_update` computes a restore on a scratch Doc from bytes
(in a compute worker, collab.history.workers, for a big document), and
`apply_restore` applies its result to the live Doc on the event loop.

Text indices: pycrdt 0.14 counts Y.Text positions in UTF-8 bytes (yrs'
default offset kind), not in code points like Python nor UTF-16 units like
Yjs; an embed counts 1, and an index inside a character makes yrs panic. The
diff works on Python strings, so every position is converted; the unit is
measured on a scratch Doc at each restore, so a pycrdt that changes it stays
correct.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from difflib import SequenceMatcher
from functools import partial
from typing import Any, TypeAlias

from pycrdt import Array, Doc, Map, Text, get_state, merge_updates

from collab.content import RootKind, root_kinds
from collab.errors import CollabError
from collab.history.restore_text import (
    UNTOUCHED_TYPES,
    Attrs,
    StringEmbed,
    TextUnits,
    fingerprint,
    sync_text,
)
from collab.protocol.codec import decode_state_vector

logger = logging.getLogger(__name__)

ORIGIN = "restore"

# The kinds of root and nested shared type a restore changes; a map's entries and
# an array's elements are JSON values or nested types, sorted out by isinstance.
SharedType: TypeAlias = Text | Map[Any] | Array[Any]
_SHARED_TYPES = (Text, Map, Array)
# pycrdt's `Doc[T]` types every root as T; this module reads roots as SharedType.
RestorableDoc: TypeAlias = Doc[SharedType]
_TYPE_OF_KIND: dict[str, type[SharedType]] = {"text": Text, "map": Map, "array": Array}


def restore_doc(doc: RestorableDoc, target_state: bytes) -> bool:
    """Make `doc`'s content equal that of the full-state update `target_state`,
    with as few operations as practical, in one transaction. Returns whether
    anything changed. Raises ValueError if `target_state` is not a Yjs update."""
    target: RestorableDoc = Doc()
    target.apply_update(target_state)
    target_kinds, current_kinds = root_kinds(target_state), root_kinds(doc.get_update())
    units = TextUnits.measured()
    changed = False
    with doc.transaction(origin=ORIGIN):
        for name in sorted(target_kinds.keys() | current_kinds.keys()):
            changed |= _restore_root(
                doc,
                target,
                name,
                target_kinds.get(name, "empty"),
                current_kinds.get(name, "empty"),
                units,
            )
    return changed


def restore_update(current_state: bytes, target_state: bytes) -> bytes | None:
    """The restore as one update: the operations that make a Doc holding
    `current_state` hold `target_state`'s content, or None when nothing differs.

    A pure job (bytes in, bytes out) for a compute worker: it works on a scratch
    Doc, so a big document's restore never blocks the event loop; the live Doc
    takes the result with `apply_restore`. Its operations are positioned against
    `current_state`: edits the live Doc received meanwhile merge with them as
    any concurrent edit does."""
    scratch: RestorableDoc = Doc()
    scratch.apply_update(current_state)
    made: list[bytes] = []
    subscription = scratch.observe(lambda event: made.append(event.update))
    try:
        if not restore_doc(scratch, target_state):
            return None
    finally:
        scratch.unobserve(subscription)
    return made[0] if len(made) == 1 else merge_updates(*made)


def apply_restore(doc: Doc[Any], update: bytes) -> None:
    """Apply `restore_update`'s result to the live Doc, in one transaction (the
    room stores and relays it as one edit)."""
    with doc.transaction(origin=ORIGIN):
        doc.apply_update(update)


class RestoreConflict(CollabError):
    """The document lost the history a restore (or revert) was computed against
    (it was deleted, and maybe created again, meanwhile)."""


def holds_history_of(state_vector: bytes, state: bytes) -> bool:
    """Whether a Doc at `state_vector` holds everything `state` holds (a room
    loaded again after its document was deleted does not: a restore or revert
    computed against `state` must not be applied to it)."""
    have, needed = decode_state_vector(state_vector), decode_state_vector(get_state(state))
    return all(have.get(client, 0) >= clock for client, clock in needed.items())


def _restore_root(
    doc: RestorableDoc,
    target: RestorableDoc,
    name: str,
    target_kind: RootKind,
    current_kind: RootKind,
    units: TextUnits,
) -> bool:
    kind = current_kind if target_kind == "empty" else target_kind
    changed = False
    if current_kind not in ("empty", kind):
        # The root now reads as another type: clear that reading first.
        changed = _sync(_typed_root(doc, name, current_kind), _empty(current_kind), units)
    if kind != "empty":
        wanted = _empty(kind) if target_kind == "empty" else _typed_root(target, name, kind)
        changed |= _sync(_typed_root(doc, name, kind), wanted, units)
    return changed


def _typed_root(doc: RestorableDoc, name: str, kind: RootKind) -> SharedType:
    return doc.get(name, type=_TYPE_OF_KIND[kind])


def _empty(kind: RootKind) -> SharedType:
    """A prelim value standing for "this root holds nothing"."""
    return _TYPE_OF_KIND[kind]()


def _sync(current: SharedType, wanted: SharedType, units: TextUnits) -> bool:
    """Make `current` hold what `wanted` holds; both are the same kind of type."""
    if isinstance(current, Text):
        assert isinstance(wanted, Text)
        return sync_text(current, wanted, units, partial(_insert_embed, units=units))
    if isinstance(current, Map):
        return _sync_map(current, _entries_of(wanted), units)
    return _sync_array(current, _items_of(wanted), units)


def _entries_of(ymap: SharedType) -> dict[str, Any]:
    assert isinstance(ymap, Map)
    return dict(ymap.items()) if ymap.is_integrated else {}


def _items_of(array: SharedType) -> list[Any]:
    assert isinstance(array, Array)
    return list(array) if array.is_integrated else []


# -- maps ----------------------------------------------------------------------


def _sync_map(current: Map[Any], wanted: dict[str, Any], units: TextUnits) -> bool:
    stale = [key for key in current.keys() if key not in wanted]
    for key in stale:
        del current[key]
    changed = bool(stale)
    for key, value in wanted.items():
        changed |= _sync_entry(current, key, value, units)
    return changed


def _sync_entry(current: Map[Any], key: str, wanted: Any, units: TextUnits) -> bool:
    if isinstance(wanted, UNTOUCHED_TYPES):
        return False
    if key in current:
        have = current[key]
        if _is_same_type(have, wanted):
            return _sync(have, wanted, units)
        if fingerprint(have) == fingerprint(wanted):
            return False
    current[key] = copy = _copy_of(wanted)
    if isinstance(copy, _SHARED_TYPES):
        _sync(copy, wanted, units)
    return True


# -- arrays --------------------------------------------------------------------


def _sync_array(current: Array[Any], wanted: list[Any], units: TextUnits) -> bool:
    have = list(current)
    matcher = SequenceMatcher(
        None, [fingerprint(v) for v in have], [fingerprint(v) for v in wanted], autojunk=False
    )
    changed = False
    # Right to left: a region's edits never shift the indices of those before it.
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag != "equal":
            _sync_array_region(current, i1, have[i1:i2], wanted[j1:j2], units)
            changed = True
    return changed


def _sync_array_region(
    current: Array[Any], at: int, have: list[Any], wanted: list[Any], units: TextUnits
) -> None:
    """Within a changed region, line up elements by kind: a current shared type
    facing one of the same kind is restored in place (it keeps its identity);
    everything else is deleted or inserted."""
    kinds = SequenceMatcher(
        None, [_kind_name(v) for v in have], [_kind_name(v) for v in wanted], autojunk=False
    )
    for tag, i1, i2, j1, j2 in reversed(kinds.get_opcodes()):
        if tag != "equal":
            if i2 > i1:
                del current[at + i1 : at + i2]
            _insert_items(current, at + i1, wanted[j1:j2], units)
            continue
        for offset in reversed(range(i2 - i1)):
            old, new = have[i1 + offset], wanted[j1 + offset]
            if _is_same_type(old, new):
                _sync(old, new, units)
            elif fingerprint(old) != fingerprint(new):
                del current[at + i1 + offset]
                _insert_items(current, at + i1 + offset, [new], units)


def _kind_name(value: Any) -> str:
    if isinstance(value, _SHARED_TYPES):
        return type(value).__name__
    return "opaque" if isinstance(value, UNTOUCHED_TYPES) else "value"


def _insert_items(current: Array[Any], at: int, items: Iterable[Any], units: TextUnits) -> None:
    for item in items:
        if isinstance(item, UNTOUCHED_TYPES):
            continue
        copy = _copy_of(item)
        current.insert(at, copy)
        if isinstance(copy, _SHARED_TYPES):
            _sync(copy, item, units)
        at += 1


# -- values --------------------------------------------------------------------


def _is_same_type(have: Any, wanted: Any) -> bool:
    return isinstance(wanted, _SHARED_TYPES) and type(have) is type(wanted)


def _copy_of(value: Any) -> Any:
    """A prelim copy of a snapshot value: shared types stay shared types. Text
    formatting and embeds are not part of a prelim; `_sync` adds them once the
    copy is in the document."""
    if isinstance(value, StringEmbed):
        return value.value
    if isinstance(value, Text):
        return Text(str(value))
    if isinstance(value, Map):
        return Map({k: _copy_of(v) for k, v in value.items() if not isinstance(v, UNTOUCHED_TYPES)})
    if isinstance(value, Array):
        return Array([_copy_of(v) for v in value if not isinstance(v, UNTOUCHED_TYPES)])
    return _writable(value)


def _writable(value: Any) -> Any:
    """Plain values as pycrdt accepts them: it reads binary back as bytearray
    but only writes bytes."""
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _writable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_writable(v) for v in value]
    return value


def _insert_embed(text: Text, position: int, value: Any, attrs: Attrs, *, units: TextUnits) -> None:
    copy = _copy_of(value)
    text.insert_embed(position, copy, attrs)
    if isinstance(copy, _SHARED_TYPES):
        _sync(copy, value, units)
