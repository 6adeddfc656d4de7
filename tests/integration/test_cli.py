"""The command line and the settings it builds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from collab import __version__
from collab.config import Settings


def test_python_dash_m_collab_shows_help():
    result = subprocess.run(
        [sys.executable, "-m", "collab", "serve", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for flag in ("--host", "--port", "--database", "--log-level"):
        assert flag in result.stdout


def test_version_flag():
    result = subprocess.run(
        [sys.executable, "-m", "collab", "--version"], capture_output=True, text=True
    )
    assert result.stdout.strip() == f"collab {__version__}"


def test_environment_variables_configure_and_flags_override():
    environ = {"COLLAB_PORT": "9000", "COLLAB_ROOM_GRACE_S": "2.5", "COLLAB_HOST": "0.0.0.0"}
    settings = Settings.load(environ, host="127.0.0.2")
    assert settings.port == 9000
    assert settings.room_grace_s == 2.5
    assert settings.host == "127.0.0.2"


def test_bad_environment_value_is_a_clear_error():
    with pytest.raises(ValueError, match="COLLAB_PORT"):
        Settings.load({"COLLAB_PORT": "eighty"})


def test_bad_flag_value_exits_with_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "collab", "serve", "--sqlite-synchronous", "SOMETIMES"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr
