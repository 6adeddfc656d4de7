"""Logging set-up: human text by default, one JSON object per line when asked.

Tokens never reach a log line, whoever writes it: the handler redacts them
(uvicorn logs WebSocket paths with their query string, `?token=...`).

collab's log lines follow one convention: an event's subject comes first as
`key=value` tokens (`doc=NAME peer=ID ...`). The JSON formatter lifts those
tokens into fields (`doc`, `conn`), so a log pipeline can filter by document or
connection without every call site repeating them as `extra=`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_SUBJECT_TOKENS = re.compile(r"(?:^|\s)(doc|peer)=(\S+)")
_FIELD_NAMES = {"doc": "doc", "peer": "conn"}
# A JWT's header always starts with `{"` -> "eyJ"; also `token=...` in query strings
# and `Bearer ...`.
_SECRETS_IN_TEXT = re.compile(
    r"eyJ[\w-]*\.[\w-]*\.[\w-]*"
    r"|(?<=token=)[^&\s\"']+"
    r"|(?<=Bearer )[\w.~+/=-]+",
    re.IGNORECASE,
)


def redact_tokens(text: str) -> str:
    return _SECRETS_IN_TEXT.sub("[redacted]", text)


class TokenRedactingFilter(logging.Filter):
    """On a handler, it sees every record, from any logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": message,
        }
        for key, value in _SUBJECT_TOKENS.findall(message):
            entry.setdefault(_FIELD_NAMES[key], int(value) if value.isdigit() else value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, its timestamp's date and time formatted once a second: the
    server logs a line per connection and per closed connection, and
    `time.strftime` was a fifth of a line's cost."""

    _second = -1
    _text = ""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"  # as `default_msec_format`


def configure_logging(level: str, log_format: str) -> None:
    # What no format of ours shows is not gathered for each record (the logging
    # HOWTO's "Optimization"): the caller's frame, thread and process names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(TokenRedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def redact_url(url: str) -> str:
    """A database URL as safe to log: its password masked (`***`), the rest as given."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
