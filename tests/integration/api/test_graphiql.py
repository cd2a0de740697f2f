"""GraphiQL answers a browser at GET /graphql; GET with a query still executes it.

The page is the API's own (api/graphiql.py): every script and stylesheet it references
is served by the API, nothing names another host, and it runs no inline script (the
Content-Security-Policy allows none). tests/system/browser runs it in Chromium.
"""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx

from api.app import create_app
from api.graphiql import ASSETS_DIR, IMMUTABLE, REVALIDATE
from core.settings import Settings

# An absolute web URL (references are checked for any scheme or host on their own; the
# bootstrap builds its ws: URL from the page's own location).
ABSOLUTE_URL = re.compile(r"https?://\S*", re.IGNORECASE)
# Files of ours (not vendored) the page loads.
OUR_FILES = ("graphiql-app.js", "graphiql-app.css")


class PageParser(HTMLParser):
    """The page's references (src, href), inline scripts and event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[tuple[str, str]] = []
        self.inline_scripts = 0
        self.handlers: list[str] = []
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name in ("src", "href"):
            if (value := attributes.get(name)) is not None:
                self.references.append((tag, value))
        self.handlers += [name for name in attributes if name.startswith("on")]
        self._in_script_without_src = tag == "script" and "src" not in attributes

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1


async def served_page(client: httpx.AsyncClient) -> httpx.Response:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response


async def test_serve_graphiql_to_browser(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await served_page(client)
    assert "graphiql" in response.text.lower()


async def test_graphiql_page_names_no_other_host_and_runs_no_inline_script(
    api_server: str,
) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        page = (await served_page(client)).text
        ours = {name: (await client.get(f"/graphiql/{name}")).text for name in OUR_FILES}
    parser = PageParser()
    parser.feed(page)
    assert parser.inline_scripts == 0
    assert parser.handlers == []
    for name, text in {"page": page, **ours}.items():
        assert not ABSOLUTE_URL.findall(text), f"{name} names a URL: {ABSOLUTE_URL.findall(text)}"
    for tag, reference in parser.references:
        assert reference.startswith("data:") or not urlsplit(reference).scheme, (tag, reference)
        assert not urlsplit(reference).netloc, (tag, reference)


async def test_serve_every_asset_graphiql_references(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await served_page(client)
        parser = PageParser()
        parser.feed(response.text)
        assets = [
            (tag, urljoin(str(response.url), reference))
            for tag, reference in parser.references
            if not reference.startswith("data:")
        ]
        kinds = {tag for tag, _ in assets}
        assert kinds == {"script", "link"}, assets
        for tag, url in assets:
            asset = await client.get(url)
            assert asset.status_code == 200, url
            expected = "text/javascript" if tag == "script" else "text/css"
            assert asset.headers["content-type"].startswith(expected), url
            path = urlsplit(url).path
            assert path.startswith("/graphiql/"), url
            vendored = path.startswith("/graphiql/vendor/")
            # Vendored files live under their version: cached for good. Ours change.
            assert asset.headers["cache-control"] == (IMMUTABLE if vendored else REVALIDATE)
            again = await client.get(url, headers={"If-None-Match": asset.headers["etag"]})
            assert again.status_code == 304, url
            assert again.headers["cache-control"] == asset.headers["cache-control"]
    assert any(url.endswith("/graphiql-app.js") for _, url in assets)


async def test_graphiql_assets_stay_in_their_folder(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        missing = await client.get("/graphiql/vendor/graphiql-0.0.0/graphiql.min.js")
        outside = await client.get("/graphiql/..%2f..%2fgraphiql.py")
    assert missing.status_code == 404
    assert outside.status_code == 404


async def test_graphiql_off_serves_no_assets(settings: Settings) -> None:
    """GRAPHIQL=false (production's default) takes the page's files away with it."""
    app = create_app(settings.model_copy(update={"graphiql": False}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/graphiql/graphiql-app.js")
    assert response.status_code == 404


def test_vendored_files_match_their_checksums() -> None:
    """What scripts/vendor-graphiql wrote, unchanged since (vendor/SHA256SUMS)."""
    vendor = ASSETS_DIR / "vendor"
    listed = {}
    for line in (vendor / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    present = {
        path.relative_to(vendor).as_posix()
        for path in vendor.rglob("*")
        if path.is_file() and path.name not in {"SHA256SUMS", "THIRD-PARTY.txt"}
    }
    assert present == set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    # Every vendored package carries its licence.
    for folder in (p for p in vendor.iterdir() if p.is_dir()):
        assert (folder / "LICENSE").is_file(), folder.name


async def test_execute_query_over_get_without_token_unauthenticated(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.get(
            "/graphql", params={"query": "{ me { id } }"}, headers={"Accept": "application/json"}
        )
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_refuse_mutation_over_get(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.get(
            "/graphql",
            params={"query": "mutation { logout }"},
            headers={"Accept": "application/json"},
        )
    # A GET must not change anything (CSRF through links and image tags).
    assert response.status_code == 400
