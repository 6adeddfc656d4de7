"""docs/configuration.md and `collab serve --help` come from the settings definitions."""

from __future__ import annotations

import argparse
from pathlib import Path

from collab.cli.reference import REGENERATE, render_configuration
from collab.cli.serve import add_serve_arguments
from collab.config import Settings, definitions

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

# The flags of `collab serve` are an external contract: never drop or rename one.
SERVE_FLAGS = {
    "--host": "host",
    "--port": "port",
    "--database": "database_url",
    "--log-level": "log_level",
    "--log-format": "log_format",
    "--sqlite-synchronous": "sqlite_synchronous",
    "--room-grace": "room_grace_s",
    "--compact-after-updates": "compact_after_updates",
    "--compact-after": "compact_after_s",
    "--compact-after-quiet": "compact_after_quiet_s",
    "--max-message-bytes": "max_message_bytes",
    "--allow-anonymous": "allow_anonymous",
    "--allowed-origins": "allowed_origins",
    "--redis-url": "redis_url",
}


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collab serve")
    add_serve_arguments(parser)
    return parser


def test_configuration_reference_matches_the_settings():
    rendered = render_configuration()
    assert REFERENCE.exists(), f"docs/configuration.md is missing: run `{REGENERATE}`"
    assert REFERENCE.read_text() == rendered, (
        "docs/configuration.md is out of date with collab/config/: run `make docs` "
        "(python -m collab.cli.reference docs/configuration.md) and commit the result"
    )


def test_serve_flags_are_exactly_the_documented_ones():
    flags = {
        action.option_strings[0]: action.dest
        for action in _serve_parser()._actions
        if action.option_strings and action.dest != "help"
    }
    assert flags == SERVE_FLAGS


def test_every_setting_is_in_the_reference_with_its_variable_and_flag():
    reference = render_configuration()
    for definition in definitions():
        assert definition.doc.help, f"{definition.name} has no help text"
        assert f"`{definition.env}`" in reference
        if definition.doc.flag:
            assert f"`{definition.doc.flag}`" in reference


def test_serve_help_names_each_flags_variable_and_default():
    help_text = " ".join(_serve_parser().format_help().split())
    for definition in definitions():
        if definition.doc.flag:
            assert definition.env in help_text
            if definition.default_text:
                assert f"default {definition.default_text}".replace("`", "") in help_text


def test_a_flag_left_out_keeps_the_variables_value():
    args = _serve_parser().parse_args([])
    options = {d.name: getattr(args, d.name) for d in definitions() if d.doc.flag}
    environ = {"COLLAB_ALLOW_ANONYMOUS": "1", "COLLAB_PORT": "4321"}
    settings = Settings.load(environ, **options)
    assert settings.allow_anonymous is True and settings.port == 4321
