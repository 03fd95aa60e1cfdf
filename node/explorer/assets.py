"""Serving the explorer's static files: read once from the package, answered with a strict content policy.

The files are package data (`node/explorer/static/`), so an installed node serves them with no build step
and the page loads nothing from anywhere but the node itself.
"""

from __future__ import annotations

import re
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

# No inline script or style, no eval, nothing from another origin; the page talks only to its own node
# (HTTP JSON-RPC and the websocket on the same host and port: 'self' covers ws: there).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}
_NAME = re.compile(r"^(?:[a-z0-9_-]+/)?[A-Za-z0-9_.-]+$")


def load_static() -> dict[str, tuple[bytes, str]]:
    """Every servable file under static/ by its relative path, with its media type (read once)."""
    files: dict[str, tuple[bytes, str]] = {}
    root = resources.files("node.explorer").joinpath("static")

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for entry in node.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                walk(entry, name + "/")
                continue
            suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
            if suffix in MEDIA_TYPES and _NAME.match(name):
                files[name] = (entry.read_bytes(), MEDIA_TYPES[suffix])

    walk(root, "")
    return files


def explorer_routes() -> list[BaseRoute]:
    """`GET /explorer` (the page) and `GET /explorer/<file>` (its scripts, styles and vendored code)."""
    files = load_static()

    def answer(name: str) -> Response:
        found = files.get(name)
        if found is None:
            return Response("not found\n", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
        body, media_type = found
        return Response(body, media_type=media_type, headers=SECURITY_HEADERS)

    async def page(request: Request) -> Response:
        return answer("index.html")

    async def asset(request: Request) -> Response:
        return answer(str(request.path_params["name"]))

    return [Route("/explorer", page, methods=["GET"]), Route("/explorer/", page, methods=["GET"]),
            Route("/explorer/{name:path}", asset, methods=["GET"])]
