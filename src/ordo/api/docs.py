"""``/api/docs``: Swagger UI over ``/api/openapi.json``, served from the vendored files
in ``static/`` (see its README) so the page works offline. The validator badge, which
would send the document to validator.swagger.io, is off; the token typed into
**Authorize** is kept across reloads of the page (in the browser's local storage)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
SWAGGER_UI = "5.35.0"
PREFIX = "/api/static"


def add_docs(app: FastAPI, openapi_url: str) -> None:
    """Serve the vendored files under ``/api/static`` and Swagger UI at ``/api/docs``."""
    app.mount(PREFIX, StaticFiles(directory=STATIC), name="api-static")

    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title="ordo API",
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle-{SWAGGER_UI}.js",
            swagger_css_url=f"{PREFIX}/swagger-ui-{SWAGGER_UI}.css",
            swagger_favicon_url=f"{PREFIX}/swagger-ui-favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    app.add_api_route("/api/docs", docs, methods=["GET"], include_in_schema=False)
