"""Which root each CRDT item hangs in: per text root counts for editing sessions.

An editing session counts what it inserted and deleted per text root. The
update a change makes says, per struct, its parent only when it has no origin
(a root's name, or a nested type's id); an item written with an origin hangs
where its origin hangs (y-protocols). So `RootIndex` keeps, per client id, the
clock runs it has seen and the root each hangs in (None: nested in a type),
and resolves an origin by looking it up. A root is a text root once a string
has been written into it directly.

The index starts empty: a room's content loaded from storage is unknown until
an origin points into it; then the index is built once from the Doc's full
state (`full_state`: called outside any transaction, as pycrdt requires, which
is why a room's own changes are counted at the end of its tick, not in the
Doc's observer; another process's changes are indexed at once, and what of
them cannot be resolved then waits for the next build).
Deleted items keep their place (yrs replaces their content, not the item), so
what a session deletes is found in the index too.

Counts are Yjs clock units (a character of text is one, or two for a UTF-16
surrogate pair; an embed or a formatting mark one), like a session's totals.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from enum import Enum

from collab.protocol.update_ids import Struct, update_ids
from collab.storage.attribution import ClockRange, RootCount

_Run = tuple[int, int, str | None]  # start, end, root (None: nested in a type)


class _Missing(Enum):
    """Not in the index (unlike None: in the index, nested in a type)."""

    MISSING = 0


_MISSING = _Missing.MISSING


class RootIndex:
    def __init__(self, full_state: Callable[[], bytes]) -> None:
        self._full_state = full_state
        self._runs: dict[int, list[_Run]] = {}
        # False until built, and after a change left out (it could not be
        # resolved without reading the Doc): the next miss rebuilds it.
        self._is_current = False
        self.text_roots: set[str] = set()

    def add(
        self, structs: Sequence[Struct], *, may_build: bool = True
    ) -> list[tuple[Struct, str | None]]:
        """Index `structs` (an update's, in order); each with its root. Without
        `may_build` (inside the Doc's observer), what cannot be resolved is left
        out, to be read from the Doc at the next build."""
        resolved = self._resolve(structs)
        if len(resolved) < len(structs):
            if not may_build:
                self._is_current = False
                structs = [struct for struct in structs if struct in resolved]
            elif not self._is_current:
                self._build()
                resolved = self._resolve(structs)
        for struct in structs:  # what stays unresolved hangs nowhere known
            resolved.setdefault(struct, None)
        for struct in structs:
            self._insert(struct.client_id, struct.start, struct.end, resolved[struct])
            if struct.is_string and isinstance(resolved[struct], str):
                self.text_roots.add(str(resolved[struct]))
        return [(struct, resolved[struct]) for struct in structs]

    def counts(
        self, structs: Sequence[Struct], deleted: Iterable[ClockRange]
    ) -> dict[str, tuple[int, int]]:
        """Clock units inserted (`structs`) and deleted (`deleted`) per text root."""
        counts: dict[str, tuple[int, int]] = {}
        for struct, root in self.add(structs):
            if root in self.text_roots:
                assert root is not None
                inserted, removed = counts.get(root, (0, 0))
                counts[root] = (inserted + struct.end - struct.start, removed)
        deleted = list(deleted)
        found = [self._overlaps(c, start, end) for c, start, end in deleted]
        covered = sum(units for overlaps in found for _, units in overlaps)
        if covered < sum(end - start for _, start, end in deleted) and not self._is_current:
            self._build()  # content loaded from storage, deleted before anything pointed into it
            found = [self._overlaps(c, start, end) for c, start, end in deleted]
        for root, units in (overlap for overlaps in found for overlap in overlaps):
            if root in self.text_roots:
                assert root is not None
                inserted, removed = counts.get(root, (0, 0))
                counts[root] = (inserted, removed + units)
        return counts

    def _resolve(self, structs: Sequence[Struct]) -> dict[Struct, str | None]:
        """Roots of the structs that can be resolved."""
        resolved: dict[Struct, str | None] = {}
        for struct in structs:  # typing: one struct, its origin indexed already
            parent = struct.parent
            root = self._lookup(parent[1], parent[2]) if isinstance(parent, tuple) else parent
            if isinstance(root, _Missing):
                return self._resolve_chains(structs)
            resolved[struct] = root
        return resolved

    def _resolve_chains(self, structs: Sequence[Struct]) -> dict[Struct, str | None]:
        """Roots of the structs that can be resolved: an origin is looked up in
        the index, or among `structs` (in any order), following the chain."""
        local: dict[int, list[Struct]] = {}
        for struct in structs:
            local.setdefault(struct.client_id, []).append(struct)
        starts = {c: [s.start for s in runs] for c, runs in local.items()}
        resolved: dict[Struct, str | None] = {}
        unresolvable: set[Struct] = set()
        for struct in structs:
            path: list[Struct] = []
            current: Struct | None = struct
            root: str | _Missing | None = _MISSING
            while current is not None:
                if current in resolved:
                    root = resolved[current]
                    break
                if current in unresolvable or current in path:
                    break
                path.append(current)
                parent = current.parent
                if not isinstance(parent, tuple):
                    root = parent
                    break
                _, client_id, clock = parent
                root = self._lookup(client_id, clock)
                if not isinstance(root, _Missing):
                    break
                index = bisect_right(starts.get(client_id, []), clock) - 1
                candidate = local[client_id][index] if index >= 0 else None
                current = candidate if candidate and clock < candidate.end else None
            for walked in path:
                if isinstance(root, _Missing):
                    unresolvable.add(walked)
                else:
                    resolved[walked] = root
        return resolved

    def _build(self) -> None:
        self._is_current = True
        structs: list[Struct] = []
        update_ids(self._full_state(), structs)
        resolved = self._resolve(structs)
        self._runs = {}
        for struct in structs:
            root = resolved.get(struct)
            self._insert(struct.client_id, struct.start, struct.end, root)
            if struct.is_string and isinstance(root, str):
                self.text_roots.add(root)

    def _lookup(self, client_id: int, clock: int) -> str | _Missing | None:
        runs = self._runs.get(client_id, [])
        index = bisect_right(runs, (clock, _END, "")) - 1
        if index >= 0 and runs[index][0] <= clock < runs[index][1]:
            return runs[index][2]
        return _MISSING

    def _insert(self, client_id: int, start: int, end: int, root: str | None) -> None:
        runs = self._runs.setdefault(client_id, [])
        if not isinstance(self._lookup(client_id, start), _Missing):
            return  # known already (the index was built from a state holding it)
        if runs and runs[-1][1] == start and runs[-1][2] == root:
            runs[-1] = (runs[-1][0], end, root)
        elif not runs or runs[-1][1] <= start:
            runs.append((start, end, root))
        else:
            runs.insert(bisect_right(runs, (start, _END, "")), (start, end, root))

    def _overlaps(self, client_id: int, start: int, end: int) -> list[tuple[str | None, int]]:
        runs = self._runs.get(client_id, [])
        index = max(0, bisect_right(runs, (start, _END, "")) - 1)
        found = []
        for run_start, run_end, root in runs[index:]:
            if run_start >= end:
                break
            units = min(end, run_end) - max(start, run_start)
            if units > 0:
                found.append((root, units))
        return found


_END = 1 << 62  # sorts after any real end clock at the same start


def root_counts(counts: dict[str, tuple[int, int]]) -> tuple[RootCount, ...]:
    return tuple((root, inserted, deleted) for root, (inserted, deleted) in sorted(counts.items()))
