"""Revoked tokens: grants an administrator took back before their `exp`.

A token is a bearer credential checked by its signature, so the server cannot
make one invalid; it keeps a list of what it must refuse instead. A
`Revocation` names either one token, by its `jti` claim, or a subject (`sub`):
then every token of that subject issued (`iat`) at or before the revocation is
refused, to the second, while tokens issued later work, so whoever issues
tokens decides whether that person gets back in. A token without `iat` cannot
show it is newer and is refused while the revocation holds. A revocation holds
until `until`, or for good when it has none (a row is a few bytes, and a
revoked token is refused until it expires in any case).

The `RevocationList` is this process's copy, checked on every admission
(`AccessPolicy`, two dictionary look-ups); the database's table is the source
of truth, and collab.cluster.revocations keeps the copy equal to it. Entries
are only ever added (and dropped once they lapse), so merging copies in any
order gives the same list.

This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from collab.auth.policy import Grant


class RevocationKind(StrEnum):
    """What a revocation names; the values are the REST API's field names."""

    TOKEN = "jti"  # one token, by its `jti` claim
    SUBJECT = "subject"  # a subject's tokens issued up to the revocation


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: RevocationKind
    value: str  # the `jti` or the `sub`
    revoked_at: float  # Unix seconds
    until: float | None = None  # Unix seconds; None: for good
    reason: str | None = None
    revoked_by: str | None = None  # the revoking token's subject, or the command line

    def is_in_force(self, now: float) -> bool:
        return self.until is None or now < self.until

    def covers(self, grant: Grant, now: float) -> bool:
        """Whether `grant` is one of the tokens this revocation refuses at `now`."""
        if not self.is_in_force(now):
            return False
        if self.kind is RevocationKind.TOKEN:
            return grant.token_id == self.value
        return grant.subject == self.value and (
            grant.issued_at is None or grant.issued_at <= self.revoked_at
        )


class RevocationList:
    """This process's revocations in force, by what they name. Satisfies
    `auth.policy.RevocationCheck`."""

    def __init__(self) -> None:
        self._by_name: dict[tuple[RevocationKind, str], set[Revocation]] = {}

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._by_name.values())

    def is_revoked(self, grant: Grant, now: float) -> bool:
        return self.refusing(grant, now) is not None

    def refusing(self, grant: Grant, now: float) -> Revocation | None:
        """The revocation that refuses `grant` at `now`, if one does."""
        names = ((RevocationKind.TOKEN, grant.token_id), (RevocationKind.SUBJECT, grant.subject))
        for kind, value in names:
            if value is None:
                continue
            for revocation in self._by_name.get((kind, value), ()):
                if revocation.covers(grant, now):
                    return revocation
        return None

    def add(self, revocation: Revocation) -> bool:
        """Whether it is new here (a revocation heard twice changes nothing)."""
        entries = self._by_name.setdefault((revocation.kind, revocation.value), set())
        if revocation in entries:
            return False
        entries.add(revocation)
        return True

    def merge(self, revocations: Iterable[Revocation]) -> list[Revocation]:
        """Add each; the ones that were new here, in order."""
        return [revocation for revocation in revocations if self.add(revocation)]

    def in_force(self, now: float) -> list[Revocation]:
        """Every revocation that still holds, oldest first; lapsed ones are dropped."""
        for key, entries in list(self._by_name.items()):
            entries -= {r for r in entries if not r.is_in_force(now)}
            if not entries:
                del self._by_name[key]
        return sorted(
            (r for entries in self._by_name.values() for r in entries),
            key=lambda r: (r.revoked_at, r.kind, r.value),
        )
