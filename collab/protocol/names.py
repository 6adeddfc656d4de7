"""Document names: the rule a name must follow, part of the public contract.

A name is the last segment of `/ws/{name}` and `/api/documents/{name}`, so it
is checked before a room or a database row is touched.

A name made only of dots (`.`, `..`, `...`) is refused: `.` and `..` are dot
segments (RFC 3986 5.2.4), which browsers, proxies and HTTP libraries resolve
into another path (`/api/documents/..` is `/api/`), so such a document could
be created by one client and never reached by another; `...` and longer are
refused with them so the rule stays one sentence.
"""

from __future__ import annotations

import re

DOCUMENT_NAME_MAX_CHARS = 128
_NAME_CHARS = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
# For validators without look-around (pydantic's): at least one character that
# is not a dot. The length (1-128) goes beside it, as `max_length`.
DOCUMENT_NAME_PATTERN = r"^[A-Za-z0-9._:-]*[A-Za-z0-9_:-][A-Za-z0-9._:-]*$"
DOCUMENT_NAME_RULE = "1-128 of A-Z a-z 0-9 . _ : -, not only dots"  # the pattern, for people


def is_valid_document_name(name: str) -> bool:
    """1-128 characters of letters, digits and `._:-`, not all of them dots (part
    of the public contract)."""
    return _NAME_CHARS.fullmatch(name) is not None and name.strip(".") != ""


def is_valid_name_prefix(prefix: str) -> bool:
    """The stem of a `PREFIX*` scope pattern: the characters of a name, 1-128 of
    them (`.*` may cover `.config`, so a stem may be only dots)."""
    return _NAME_CHARS.fullmatch(prefix) is not None
