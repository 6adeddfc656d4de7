"""What a setting is: its documentation, the values it accepts, how it reads from text.

`setting(...)` makes a `Settings` field (collab.config.settings) that carries its
help text, its section of the reference and, for the common ones, its
`collab serve` flag. `SettingDefinition` is one field as the command line
(collab.cli.serve) and the reference (collab.cli.reference) show it, so the two
can never disagree. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "COLLAB_"

# The reference's sections, in order (docs/configuration.md; `setting(section=...)`).
SECTIONS = (
    "Server",
    "Logging",
    "Storage",
    "Rooms and compaction",
    "Version history",
    "Connections",
    "Limits",
    "Access",
    "Cluster",
    "Events and webhooks",
)

_BOOLEANS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}


class Bound(StrEnum):
    """The values a numeric setting accepts; each value is the error message."""

    AT_LEAST_ONE = "must be at least 1"
    LIMIT = "must be 0 (no limit) or more"
    POSITIVE = "must be greater than 0"
    NOT_NEGATIVE = "must not be negative"

    def admits(self, value: float) -> bool:
        if self is Bound.AT_LEAST_ONE:
            return value >= 1
        return value > 0 if self is Bound.POSITIVE else value >= 0


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """What a setting's field carries besides its default (see `setting`)."""

    help: str
    section: str
    flag: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    shown_default: str | None = None  # when the value itself does not say it well
    bound: Bound | None = None


@dataclass(frozen=True, slots=True)
class SettingDefinition:
    """One setting as the CLI and the reference show it."""

    name: str
    kind: str  # "str", "int", "float", "bool" or "Path"
    default: Any
    doc: SettingDoc

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def default_text(self) -> str:
        """The default as a reader sees it; "" when there is none."""
        if self.doc.shown_default is not None:
            return self.doc.shown_default
        value = self.default
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    @property
    def default_note(self) -> str:
        """What the default means when its digits don't say it at once (`32 MiB`)."""
        value = self.default
        if isinstance(value, int) and self.name.endswith("_bytes") and value >= 1024:
            return _binary_size(value)
        return ""

    def parse(self, raw: str) -> Any:
        """The value of `raw`, as the variable gives it; ValueError naming the variable."""
        kind = self.kind
        try:
            if kind == "int":
                return int(raw)
            if kind == "float":
                return float(raw)
            if kind == "Path":
                return Path(raw)
            if kind == "bool":
                return _BOOLEANS[raw.strip().lower()]
        except KeyError:
            raise ValueError(f"{self.env}={raw!r}: use 1/true/yes/on or 0/false/no/off") from None
        except ValueError as exc:
            raise ValueError(f"{self.env}={raw!r}: not a valid {kind}") from exc
        return raw


_T = TypeVar("_T")


def setting(
    default: _T,
    help: str,
    *,
    section: str,
    flag: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] = (),
    shown_default: str | None = None,
    bound: Bound | None = None,
    is_secret: bool = False,
) -> _T:
    """A `Settings` field with its documentation (typed as its default)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}")
    doc = SettingDoc(help, section, flag, metavar, choices, shown_default, bound)
    return field(default=default, repr=not is_secret, metadata={"doc": doc})


def _binary_size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} bytes"
