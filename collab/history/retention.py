"""Which automatic versions to thin out: a pure function of the versions and the time.

Named and pre-restore versions are always kept. Automatic ones are kept:
all of them for `keep_all_s`; then the newest in each hour until `hourly_s`;
then the newest in each day (for `daily_s`, or forever when it is 0).
The newest version of a document is never selected: loading starts from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collab.storage.store import SnapshotInfo, SnapshotKind

_HOUR_S = 3600.0
_DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_all_s: float = _HOUR_S
    hourly_s: float = _DAY_S
    daily_s: float = 0.0  # 0: keep one a day forever


def select_for_deletion(
    versions: Iterable[SnapshotInfo], now: float, policy: RetentionPolicy
) -> list[int]:
    versions = sorted(versions, key=lambda v: v.id, reverse=True)
    if not versions:
        return []
    newest_id = versions[0].id
    kept_buckets: set[tuple[str, int]] = set()
    doomed: list[int] = []
    for version in versions:  # newest first, so each bucket keeps its newest
        if version.kind is not SnapshotKind.AUTO or version.id == newest_id:
            continue
        age_s = now - version.created_at
        if age_s <= policy.keep_all_s:
            continue
        if age_s <= policy.hourly_s:
            bucket = ("hour", int(version.created_at // _HOUR_S))
        elif policy.daily_s and age_s > policy.daily_s:
            doomed.append(version.id)
            continue
        else:
            bucket = ("day", int(version.created_at // _DAY_S))
        if bucket in kept_buckets:
            doomed.append(version.id)
        else:
            kept_buckets.add(bucket)
    return sorted(doomed)
