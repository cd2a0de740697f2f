"""The web console: a single page served by the API, speaking only its public GraphQL API.

docs/console.md. The page (GET /console) and its files (/console/...) are plain files
from api/static/console/: index.html, our ES modules (js/), our stylesheet and the
vendored uPlot (vendor/, scripts/vendor-console). Nothing is bundled and nothing comes
from another host, so the console works offline.

- Vendored files are named after their package's version: cached for a year. Ours are
  revalidated on every load (no-cache, ETag), so an edit reaches browsers at once.
- Text files are sent gzip-compressed to a client that accepts it, compressed once per
  file version and kept in memory (the folder is small and fixed). Only here: the API's
  streaming responses (GraphQL incremental delivery, subscriptions over HTTP) are never
  buffered by a compressing middleware.
- The console's responses carry a Content-Security-Policy of their own, stricter than
  the API's default (api/security_headers.py): no inline style either, WebSockets only
  to this origin.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path
from typing import Final

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CONSOLE_PATH: Final = "/console"
CONSOLE_DIR: Final = Path(__file__).parent / "static" / "console"
VENDOR_DIR: Final = "vendor"
INDEX: Final = "index.html"

IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"
# 'self' covers ws:/wss: to this origin (CSP Level 3). Styles only from files: the
# console and uPlot set element styles through the CSSOM, which style-src allows.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'; frame-ancestors 'none'"
)
COMPRESSIBLE: Final = frozenset({".html", ".js", ".mjs", ".css", ".svg", ".json", ".txt"})
# Below this, gzip's header costs more than it saves.
MIN_COMPRESS_BYTES: Final = 512


@lru_cache(maxsize=256)
def _gzipped(path: str, mtime_ns: int, size: int) -> bytes:
    """A file's gzip body, once per version (path, mtime, size) of the file."""
    return gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0)


def _accepts_gzip(scope: Scope) -> bool:
    accepted = Headers(scope=scope).get("accept-encoding", "")
    codings = {part.split(";")[0].strip().lower() for part in accepted.split(",")}
    return "gzip" in codings


class ConsoleAssets(StaticFiles):
    """The console's files (GET /console/ is index.html; the page routes by its #fragment)."""

    def __init__(self) -> None:
        super().__init__(directory=CONSOLE_DIR, html=True)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        path = Path(full_path).resolve()
        relative = path.relative_to(CONSOLE_DIR.resolve())
        vendored = relative.parts[:1] == (VENDOR_DIR,)
        response = super().file_response(full_path, stat_result, scope, status_code)
        if (
            isinstance(response, FileResponse)
            and path.suffix in COMPRESSIBLE
            and stat_result.st_size >= MIN_COMPRESS_BYTES
            and _accepts_gzip(scope)
        ):
            body = _gzipped(str(path), stat_result.st_mtime_ns, stat_result.st_size)
            headers = {
                name: value
                for name, value in response.headers.items()
                if name not in {"content-length", "accept-ranges", "etag"}
            }
            # The same version, another representation: a weak validator (a browser's
            # If-None-Match with it still matches, Starlette drops the W/).
            if etag := response.headers.get("etag"):
                headers["etag"] = f"W/{etag}"
            response = Response(body, status_code, headers=headers)
            response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
        response.headers["Cache-Control"] = IMMUTABLE if vendored else REVALIDATE
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


async def to_console(request: Request) -> Response:
    """GET /: the console."""
    # Relative: right behind a path prefix too.
    return RedirectResponse(f"{CONSOLE_PATH.lstrip('/')}/", status_code=307)
