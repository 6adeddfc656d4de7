"""The web client as the server serves it: pages, assets, and a missing build."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from collab.config import Settings
from tests.support.server import REPO, run_server

BUILT = REPO / "web" / "dist"


def require_built_client() -> None:
    """Fail, never skip: an unbuilt client must not look like a passing suite."""
    if not (BUILT / "editor.html").is_file():
        pytest.fail(f"{BUILT} is not built: run `make install` (npm ci + esbuild in web/)")


async def test_pages_and_their_assets_are_served(server):
    require_built_client()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for path, script in (("/", "list-"), ("/d/meeting-notes", "editor-"), ("/d/a.b:c_d", "")):
            page = await http.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["cache-control"] == "no-cache"  # it names hashed assets
            assert script in page.text
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
        for asset in assets:
            response = await http.get(asset)
            assert response.status_code == 200, asset
            assert response.content


async def test_editor_page_for_a_bad_name_is_a_404_with_the_rule(server):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for path in ("/d/has%20space", "/d/a/b", "/d/" + "x" * 129):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert "bad document name" in response.text
            assert "1-128" in response.text


async def test_without_a_build_the_pages_say_how_to_build_it(settings, tmp_path: Path):
    bare = settings.replace(web_dir=tmp_path / "no-web")
    async with run_server(bare) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        for path in ("/", "/d/notes", "/assets/editor-ABC.js"):
            response = await http.get(path)
            assert response.status_code == 503, path
            assert "web client not built: run make install" in response.text
        # the API does not depend on the client
        assert (await http.get("/api/documents")).status_code == 200


async def test_web_dir_setting_chooses_the_client(settings: Settings, tmp_path: Path):
    web = tmp_path / "web"
    (web / "dist" / "assets").mkdir(parents=True)
    (web / "dist" / "index.html").write_text("<p>custom list</p>")
    (web / "dist" / "assets" / "x.js").write_text("// x")
    async with (
        run_server(settings.replace(web_dir=web)) as server,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        assert (await http.get("/")).text == "<p>custom list</p>"
        assert (await http.get("/assets/x.js")).text == "// x"
        assert (await http.get("/assets/missing.js")).status_code == 404
        assert (await http.get("/d/notes")).status_code == 503  # no editor.html there
