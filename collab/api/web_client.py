"""The browser editor's pages and bundle, as `make install` builds them.

Part of the transport layer (with app.py): `/` the document list, `/d/{name}`
the editor, `/assets/*` the bundle, all from `WEB_DIR/dist` (web/build.mjs
writes it). The pages are looked up per request, so a server started before
the build serves them once it exists, and a missing build is a clear 503, never
a stack trace.

Each page response is made for one request: it carries a fresh nonce in its
Content-Security-Policy (collab.api.security_headers.page_policy) and in the
page, where the editor hands it to the `<style>` elements CodeMirror creates,
and it tells the page whether remote images are allowed (both are marks the
build leaves in the pages). Pages are therefore never cached (`no-cache`; they
are a few kB); the assets they name carry a content hash in their names and are
cached for a year, `immutable`. The build writes a gzip and a brotli copy next
to each script and stylesheet, sent to browsers that accept one
(`Vary: Accept-Encoding`); nothing is compressed per request.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from collab.api.security_headers import CSP, page_policy
from collab.protocol.names import DOCUMENT_NAME_RULE, is_valid_document_name

logger = logging.getLogger(__name__)

NOT_BUILT = "web client not built: run make install"

# The marks web/build.mjs leaves in the pages, filled in per response.
NONCE_MARK = "%CSP_NONCE%"
REMOTE_IMAGES_MARK = "%REMOTE_IMAGES%"

# A plain file name in the assets folder: no separators, no leading dot.
ASSET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# esbuild's `[name]-[hash]`: eight base-32 characters (then .js, .css, .js.map...).
HASHED_ASSET_NAME = re.compile(r"[A-Za-z0-9_.-]+-[A-Z0-9]{8}\.[A-Za-z0-9.]+")
CACHED_FOR_EVER = "public, max-age=31536000, immutable"
# The encodings the build writes, preferred first: (Content-Encoding, file suffix).
PRECOMPRESSED = (("br", ".br"), ("gzip", ".gz"))
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".map": "application/json"}


def add_web_client(app: FastAPI, built_dir: Path, *, allow_remote_images: bool) -> None:
    assets_dir = built_dir / "assets"

    def page(file_name: str) -> Response:
        path = built_dir / file_name
        try:
            # A few kB from the page cache: read per request, so a rebuild shows at once.
            template = path.read_text("utf-8")
        except OSError as exc:
            logger.error("web page %s is missing (%s): %s", path, exc.strerror, NOT_BUILT)
            return PlainTextResponse(NOT_BUILT, status_code=503)
        nonce = secrets.token_urlsafe(18)
        html = template.replace(NONCE_MARK, nonce).replace(
            REMOTE_IMAGES_MARK, "allowed" if allow_remote_images else "blocked"
        )
        return HTMLResponse(
            html,
            headers={
                "Cache-Control": "no-cache",
                CSP: page_policy(nonce, allow_remote_images=allow_remote_images),
            },
        )

    @app.get("/", include_in_schema=False)
    async def document_list_page() -> Response:
        return page("index.html")

    @app.get("/d/{name:path}", include_in_schema=False)
    async def editor_page(name: str) -> Response:
        if not is_valid_document_name(name):
            return PlainTextResponse(
                f"bad document name {name[:200]!r}: use {DOCUMENT_NAME_RULE}", status_code=404
            )
        return page("editor.html")

    @app.api_route("/assets/{file_name}", methods=["GET", "HEAD"], include_in_schema=False)
    async def asset(file_name: str, request: Request) -> Response:
        if not assets_dir.is_dir():
            return PlainTextResponse(NOT_BUILT, status_code=503)
        path = assets_dir / file_name
        if not ASSET_NAME.fullmatch(file_name) or not path.is_file():
            return PlainTextResponse("Not Found", status_code=404)
        headers = {
            "Cache-Control": (
                CACHED_FOR_EVER if HASHED_ASSET_NAME.fullmatch(file_name) else "no-cache"
            ),
            "Vary": "Accept-Encoding",
        }
        served = path
        accepted = accepted_encodings(request.headers.get("accept-encoding", ""))
        for encoding, suffix in PRECOMPRESSED:
            compressed = path.with_name(file_name + suffix)
            if encoding in accepted and _is_copy_of(compressed, path):
                served = compressed
                headers["Content-Encoding"] = encoding
                break
        return FileResponse(served, media_type=_media_type(file_name), headers=headers)


def accepted_encodings(accept_encoding: str) -> set[str]:
    """The content codings an `Accept-Encoding` header accepts (RFC 9110 12.5.3).

    `q=0` refuses a coding; `*` stands for every coding not named otherwise.
    """
    accepted: set[str] = set()
    refused: set[str] = set()
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        quality = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        (accepted if quality > 0 else refused).add(coding)
    if "*" in accepted:
        accepted |= {encoding for encoding, _ in PRECOMPRESSED}
    return accepted - refused


def _is_copy_of(compressed: Path, original: Path) -> bool:
    """A compressed copy written with (or after) the file, not left from another build."""
    try:
        return compressed.stat().st_mtime_ns >= original.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _media_type(file_name: str) -> str:
    known = MEDIA_TYPES.get(Path(file_name).suffix) or mimetypes.guess_type(file_name)[0]
    return known or "application/octet-stream"
