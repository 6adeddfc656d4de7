"""The Redis client, imported once for the cluster package.

redis-py is an optional extra (`collab[cluster]`): a server without a Redis URL
never imports this module, and one with a URL but without the package fails at
start with `MissingDriver` naming the extra, not with a bare ImportError.
"""

from __future__ import annotations

from collab.errors import MissingDriver

try:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ModuleNotFoundError as exc:  # an optional extra: only a clustered server needs it
    if (exc.name or "").partition(".")[0] != "redis":
        raise
    raise MissingDriver("a Redis URL (redis://)", "redis", "cluster") from exc

__all__ = ["NoBackoff", "Redis", "RedisError", "Retry"]
