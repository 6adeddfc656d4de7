"""The web client as the server serves it: pages, assets, and a missing build."""

from __future__ import annotations

import gzip
import re
import subprocess
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


def _policy(response: httpx.Response) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    directives = (d.split() for d in response.headers["content-security-policy"].split(";"))
    return {d[0]: d[1:] for d in directives if d}


async def test_pages_send_a_strict_content_security_policy_with_a_fresh_style_nonce(server):
    require_built_client()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        nonces = []
        for path in ("/", "/d/notes", "/d/notes"):
            page = await http.get(path)
            policy = _policy(page)
            assert policy["script-src"] == ["'self'"], path  # no inline script
            assert policy["default-src"] == ["'self'"]
            assert policy["frame-ancestors"] == ["'none'"]
            assert policy["object-src"] == ["'none'"]
            assert policy["base-uri"] == ["'none'"]
            assert policy["img-src"] == ["'self'", "data:"]  # no remote images by default
            assert policy["connect-src"] == ["'self'"]  # the same host's ws: too (CSP 3)
            style, nonce = policy["style-src"]
            assert style == "'self'" and nonce.startswith("'nonce-")
            nonce = nonce.removeprefix("'nonce-").removesuffix("'")
            assert len(nonce) >= 22  # at least 128 bits
            # The page carries the same nonce, for CodeMirror's <style> elements.
            assert 'rel="stylesheet" href="/assets/' in page.text
            assert f'nonce="{nonce}"' in page.text
            assert '<meta name="collab-remote-images" content="blocked">' in page.text
            assert not re.search(r"%[A-Z_]+%", page.text)  # every mark filled in
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "same-origin"
            nonces.append(nonce)
        assert len(set(nonces)) == 3  # one per response


async def test_remote_images_setting_opens_img_src_and_tells_the_page(settings: Settings):
    require_built_client()
    async with (
        run_server(settings.replace(allow_remote_images=True)) as server,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        page = await http.get("/d/notes")
        assert _policy(page)["img-src"] == ["'self'", "data:", "https:", "http:"]
        assert _policy(page)["script-src"] == ["'self'"]
        assert '<meta name="collab-remote-images" content="allowed">' in page.text


async def test_api_and_other_responses_are_not_sniffed_framed_or_run(server):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for path in ("/api/documents", "/api/documents/missing", "/healthz", "/d/a%20b"):
            response = await http.get(path)
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["referrer-policy"] == "same-origin", path
            policy = _policy(response)
            assert policy == {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}, path
        # FastAPI's docs page (Swagger UI from its CDN, inline script) still works: not framed only.
        docs = await http.get("/docs")
        assert docs.status_code == 200
        assert _policy(docs) == {"frame-ancestors": ["'none'"]}
        assert docs.headers["x-content-type-options"] == "nosniff"


async def _page_assets(http: httpx.AsyncClient) -> list[str]:
    page = await http.get("/d/notes")
    assets = re.findall(r'(?:src|href)="/assets/([^"]+)"', page.text)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    return assets


async def _raw(http: httpx.AsyncClient, path: str, accept_encoding: str) -> httpx.Response:
    """The response with its body exactly as sent (httpx would decode gzip)."""
    async with http.stream("GET", path, headers={"Accept-Encoding": accept_encoding}) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    response._content = body
    return response


async def test_hashed_assets_are_sent_gzipped_when_accepted_and_cached_for_a_year(server):
    require_built_client()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for name in await _page_assets(http):
            original = (BUILT / "assets" / name).read_bytes()
            for accepted in ("gzip", "gzip, deflate", "deflate, gzip;q=0.5, br;q=0"):
                response = await _raw(http, f"/assets/{name}", accepted)
                assert response.status_code == 200
                assert response.headers["content-encoding"] == "gzip", (name, accepted)
                assert gzip.decompress(response.content) == original
                assert len(response.content) < len(original) / 2
                assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
                assert "accept-encoding" in response.headers["vary"].lower()
                assert response.headers["x-content-type-options"] == "nosniff"
            kind = "text/javascript" if name.endswith(".js") else "text/css"
            assert response.headers["content-type"].startswith(kind)

            # Not accepted: the file as it is, under the same cache rules.
            for accepted in ("identity", "gzip;q=0, *;q=0", ""):
                plain = await _raw(http, f"/assets/{name}", accepted)
                assert "content-encoding" not in plain.headers, (name, accepted)
                assert plain.content == original
                assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
                assert "accept-encoding" in plain.headers["vary"].lower()


async def test_hashed_assets_are_sent_with_brotli_when_accepted(server):
    require_built_client()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for name in await _page_assets(http):
            response = await _raw(http, f"/assets/{name}", "gzip, deflate, br, zstd")
            assert response.headers["content-encoding"] == "br"
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert _brotli_decompress(response.content) == (BUILT / "assets" / name).read_bytes()
            head = await http.head(f"/assets/{name}", headers={"Accept-Encoding": "br"})
            assert head.status_code == 200 and head.headers["content-encoding"] == "br"
            assert int(head.headers["content-length"]) == len(response.content)


def _brotli_decompress(data: bytes) -> bytes:
    """Python has no brotli here; Node (which built the client) has."""
    script = (
        "process.stdout.write(require('zlib').brotliDecompressSync(require('fs').readFileSync(0)))"
    )
    return subprocess.run(
        ["node", "-e", script], input=data, capture_output=True, check=True
    ).stdout


async def test_asset_names_stay_inside_the_assets_folder(server):
    require_built_client()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for path in ("/assets/..%2Feditor.html", "/assets/.hidden", "/assets/%2E%2E", "/assets/"):
            assert (await http.get(path)).status_code == 404, path
