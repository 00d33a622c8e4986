"""/docs (Swagger UI) and /redoc (ReDoc), with every file they load served from our own origin.

FastAPI's own pages load both from a CDN, with no integrity hash, on the origin where the
console's session cookie lives: whoever controlled that CDN, or the path to it, would run
script there. The `fastapi-offline` package ships the same files; they are served here from
/docs/assets/, and a Content-Security-Policy keeps the pages to scripts of this origin.
WEB_DOCS=false turns the pages off (/openapi.json, plain JSON, stays).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

ASSETS_PATH = "/docs/assets"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
# Swagger UI starts itself with an inline script, and ReDoc runs a worker from a blob: both
# allowed, but no script, style or connection from any other origin.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def add_docs_routes(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """GET /docs, /redoc and their files, on `app` (built with docs_url=redoc_url=None)."""
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _confined(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=title,
                swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            )
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _confined(
            get_redoc_html(
                openapi_url=openapi_url,
                title=title,
                redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
                with_google_fonts=False,
            )
        )

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in ASSET_TYPES:
            return Response(status_code=404)
        response = Response(_asset_bytes(name), media_type=ASSET_TYPES[name])
        response.headers["Cache-Control"] = "max-age=86400"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    page.headers["X-Content-Type-Options"] = "nosniff"
    return page


@cache
def _asset_bytes(name: str) -> bytes:
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()
