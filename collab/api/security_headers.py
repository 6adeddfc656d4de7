"""The headers every HTTP response carries so that browsers hold the line too.

Part of the transport layer. What a browser may do with a response is the
server's to say: the editor's pages get a Content-Security-Policy (built here by
`page_policy`, sent by collab.api.web_client with a fresh nonce per response)
that lets scripts and styles come only from this server, so that a document's
markup, should any get past the preview's sanitiser, can neither run nor
restyle the page nor frame it; everything else (the API's JSON, the assets,
errors) gets a policy that allows nothing at all, since none of it is meant to
be shown as a page. `X-Content-Type-Options: nosniff` keeps a browser from
taking a JSON body or an upload for HTML or script, and the referrer policy keeps
a page's `?token=` inside the site.

HTTP only: the /ws/ route is served ahead of this middleware (collab.api.sockets)
and a WebSocket has no use for these headers. A response that sets one of them
itself keeps its own.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "Content-Security-Policy"
# Nothing a browser loads from this server, page or not, is sent to another site
# with its address: the editor's URL may hold a token.
REFERRER_POLICY = "same-origin"
# For responses that are not pages: a browser that opens one shows it inertly.
NOTHING_ALLOWED = "default-src 'none'; frame-ancestors 'none'"
# FastAPI's interactive docs load Swagger UI / ReDoc from a CDN with inline
# scripts; they are not framed either, and otherwise work as FastAPI ships them.
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
DOCS_POLICY = "frame-ancestors 'none'"


def page_policy(nonce: str, *, allow_remote_images: bool) -> str:
    """The Content-Security-Policy of the editor's pages (`/` and `/d/{name}`).

    Scripts and stylesheets only from this server; `<style>` elements only with
    `nonce` (CodeMirror creates them at run time, and is given the nonce);
    no inline script, no inline style attribute. Images from this server and
    `data:`, and from anywhere when remote images are allowed. `connect-src
    'self'` covers the WebSocket too: CSP 3 matches `ws:`/`wss:` to the page's
    own host under 'self' (Chrome ≥ 71, Firefox, Safari ≥ 16: every browser the
    bundle is built for).
    """
    images = "'self' data: https: http:" if allow_remote_images else "'self' data:"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            f"style-src 'self' 'nonce-{nonce}'",
            f"img-src {images}",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


class SecurityHeaders:
    """ASGI middleware: nosniff, the referrer policy and a default policy on HTTP responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_POLICY if scope["path"] in DOCS_PATHS else NOTHING_ALLOWED

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", REFERRER_POLICY)
                headers.setdefault(CSP, policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)
