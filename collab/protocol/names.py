"""Document names: the rule a name must follow, part of the public contract.

A name is the last segment of `/ws/{name}` and `/api/documents/{name}`, so it
is checked before a room or a database row is touched.
"""

from __future__ import annotations

import re

_DOCUMENT_NAME = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
DOCUMENT_NAME_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
DOCUMENT_NAME_RULE = "1-128 of A-Z a-z 0-9 . _ : -"  # the pattern, for people


def is_valid_document_name(name: str) -> bool:
    """1-128 characters of letters, digits and `._:-` (part of the public contract)."""
    return _DOCUMENT_NAME.fullmatch(name) is not None
