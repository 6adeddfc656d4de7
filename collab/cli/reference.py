"""docs/configuration.md, rendered from the settings definitions (collab.config).

    python -m collab.cli.reference docs/configuration.md   # what `make docs` runs

The settings carry their defaults, variables, flags and help text; this module
only lays them out, with a few lines of prose per section. The page is checked
in, and tests/unit/test_configuration_docs.py fails when it differs from what
this renders, so the reference cannot drift from the code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from collab.config import definitions
from collab.config.definition import SECTIONS, SettingDefinition
from collab.config.settings import CLIENT_VARIABLES

REGENERATE = "make docs"

_INTRO = f"""\
# Configuration

<!-- Generated from collab/config/ by `{REGENERATE}`: edit the settings there, not this page. -->

Every setting of `collab serve` is a `COLLAB_*` environment variable, and the
common ones are also flags (`collab serve --help` lists them, with the same
text). A flag wins over the variable, and the variable over the default; an
empty variable counts as unset. `python -m collab` is the same command as
`collab`.

- Durations are in seconds (`_S`), sizes in bytes (`_BYTES`).
- Booleans take `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`.
- A server refuses to start on a value it cannot use, and says which.
"""

# Prose under a section's title (the settings' own text is in collab/config/settings.py).
_SECTION_NOTES = {
    "Version history": """\
Automatic versions are the compaction snapshots; named and pre-restore versions
are always kept. See [version history](http-api.md#version-history).
""",
    "Limits": """\
`0` turns a limit off. Every refusal is logged with its document and connection
and counted in `/metrics` (`collab_limit_refusals_total{limit}`,
`collab_connections_closed_total{code}`); the codes are in
[close codes](close-codes.md), and [security](security.md#limits) says where
each limit is checked.
""",
    "Access": """\
With a key (a secret or a public key), every WebSocket connection and every
`/api/` call needs a token; see [security](security.md).
""",
    "Cluster": """\
Several `collab serve` processes sharing one database; see
[operations](operations.md#several-processes).
""",
}

_CLIENTS = """\
## Command-line clients

Read by the command-line tools, not by the server.
"""

_OUTRO = """\
The test suite reads a few variables of its own (`COLLAB_TEST_*`); they are in
[development](development.md#tests).
"""


def render_configuration() -> str:
    """The whole page, as docs/configuration.md holds it."""
    parts = [_INTRO]
    by_section: dict[str, list[SettingDefinition]] = {section: [] for section in SECTIONS}
    for definition in definitions():
        by_section[definition.doc.section].append(definition)
    for section, settings in by_section.items():
        parts.append(f"## {section}\n")
        if section in _SECTION_NOTES:
            parts.append(_SECTION_NOTES[section])
        rows = [_row(d.env, d.doc.flag, _default(d), d.doc.help) for d in settings]
        parts.append(_table(rows))
    parts.append(_CLIENTS)
    parts.append(_table([_row(env, flag, "(none)", text) for env, flag, text in CLIENT_VARIABLES]))
    parts.append(_OUTRO)
    return "\n".join(parts)


def _default(definition: SettingDefinition) -> str:
    """A computed default as code; one written for readers (`shown_default`) as it is."""
    text = definition.default_text
    if definition.doc.shown_default is not None or not text:
        return text or "(none)"
    note = f" ({definition.default_note})" if definition.default_note else ""
    return f"`{text}`{note}"


def _row(env: str, flag: str | None, default: str, meaning: str) -> str:
    if flag and not flag.startswith("`"):
        flag = f"`{flag}`"
    cells = [f"`{env}`", flag or "", default, meaning]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _table(rows: list[str]) -> str:
    return "\n".join(["| variable | flag | default | meaning |", "|---|---|---|---|", *rows]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the page to the path given, or to stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = render_configuration()
    if args:
        Path(args[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
