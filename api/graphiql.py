"""GraphiQL, served by the API itself: works offline and under a strict CSP.

strawberry's own page loads React and GraphiQL from a CDN and runs an inline script;
this one references only files the API serves under /graphiql (docs/graphiql.md):

- vendor/: GraphiQL, React, ReactDOM and the explorer plugin, as published on npm
  (scripts/vendor-graphiql re-fetches them). Each folder is named after its package's
  version, so a file's content never changes under its URL: cached for a year.
- graphiql-app.js and graphiql-app.css: ours, revalidated on every load (no-cache,
  ETag), so an edit reaches browsers at once.

The page uses relative URLs only (it is served at /graphql, the assets at /graphiql/...),
so it works on any host and behind a path prefix. graphiql-app.js points GraphiQL at the
page's own URL for HTTP and the same URL over ws:/wss: for subscriptions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

ASSETS_PATH: Final = "/graphiql"
ASSETS_DIR: Final = Path(__file__).parent / "static" / "graphiql"
VENDOR_DIR: Final = "vendor"

IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"

# Relative to the page (/graphql): "graphiql/..." is /graphiql/... on the same origin.
_BASE: Final = ASSETS_PATH.lstrip("/")
STYLESHEETS: Final = (
    f"{_BASE}/vendor/graphiql-3.8.3/graphiql.min.css",
    f"{_BASE}/vendor/graphiql-plugin-explorer-3.2.5/style.css",
    f"{_BASE}/graphiql-app.css",
)
# In order: React, then ReactDOM, then GraphiQL (which reads both as globals), then the
# plugin (reads GraphiQL's), then ours.
SCRIPTS: Final = (
    f"{_BASE}/vendor/react-18.3.1/react.production.min.js",
    f"{_BASE}/vendor/react-dom-18.3.1/react-dom.production.min.js",
    f"{_BASE}/vendor/graphiql-3.8.3/graphiql.min.js",
    f"{_BASE}/vendor/graphiql-plugin-explorer-3.2.5/index.umd.js",
    f"{_BASE}/graphiql-app.js",
)


def _page() -> str:
    links = "\n".join(f'    <link rel="stylesheet" href="{href}">' for href in STYLESHEETS)
    scripts = "\n".join(f'    <script src="{src}"></script>' for src in SCRIPTS)
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>GraphiQL · IoT platform</title>
    <link rel="icon" href="data:,">
{links}
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <noscript>GraphiQL needs JavaScript. POST operations to this URL instead.</noscript>
{scripts}
  </body>
</html>
"""


PAGE: Final = _page()


def graphiql_page() -> Response:
    """The GraphiQL page, for a browser's GET /graphql (no inline script or style)."""
    return HTMLResponse(PAGE)


class GraphiQLAssets(StaticFiles):
    """The page's files: vendored ones cached for good, ours revalidated."""

    def __init__(self) -> None:
        super().__init__(directory=ASSETS_DIR)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        relative = Path(full_path).resolve().relative_to(ASSETS_DIR.resolve())
        vendored = relative.parts[:1] == (VENDOR_DIR,)
        # On a 304 too: it renews the cached copy's lifetime.
        response.headers["Cache-Control"] = IMMUTABLE if vendored else REVALIDATE
        return response
