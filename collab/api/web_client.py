"""The browser editor's pages and bundle, as `make install` builds them.

Part of the transport layer (with app.py): `/` the document list, `/d/{name}`
the editor, `/assets/*` the bundle, all from `WEB_DIR/dist` (web/build.mjs
writes it). The pages are looked up per request, so a server started before
the build serves them once it exists, and a missing build is a clear 503, never
a stack trace. Asset names carry a content hash (cacheable for ever); the pages
that name them are revalidated on every load.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from collab.protocol.names import DOCUMENT_NAME_RULE, is_valid_document_name

logger = logging.getLogger(__name__)

NOT_BUILT = "web client not built: run make install"


class _BuiltAssets(StaticFiles):
    async def check_config(self) -> None:
        try:
            await super().check_config()
        except RuntimeError as exc:  # Starlette's "directory does not exist"
            raise HTTPException(503, NOT_BUILT) from exc


def add_web_client(app: FastAPI, built_dir: Path) -> None:
    def page(file_name: str) -> Response:
        path = built_dir / file_name
        if not path.is_file():
            logger.error("web page %s is missing: %s", path, NOT_BUILT)
            return PlainTextResponse(NOT_BUILT, status_code=503)
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

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

    app.mount("/assets", _BuiltAssets(directory=built_dir / "assets", check_dir=False))
