"""The web console, as the API serves it (api/console.py): GET / leads to /console/;
the page and its files come gzip-compressed to a client that accepts it (exact bytes
back), with a CSP that allows no inline script or style; vendored files are cached for
good, ours revalidated (304 on a matching ETag, compressed or not); nothing outside the
folder. tests/system/browser/test_console_journeys.py runs it in Chromium."""

from __future__ import annotations

import httpx

from api.console import CONSOLE_DIR, CONTENT_SECURITY_POLICY, IMMUTABLE, REVALIDATE

VENDORED = "/console/vendor/uplot-1.6.32/uPlot.iife.min.js"


async def test_root_redirects_to_the_console(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.get("/")
        assert response.status_code == 307
        assert response.headers["location"] == "console/"
        page = await client.get("/", follow_redirects=True)
        bare = await client.get("/console", follow_redirects=True)
    assert page.url.path == bare.url.path == "/console/"
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == (CONSOLE_DIR / "index.html").read_text()


async def test_console_files_come_compressed_with_their_policy(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        for path in ("/console/", "/console/js/main.js", "/console/console.css", VENDORED):
            raw = await client.get(path, headers={"Accept-Encoding": "gzip"})
            assert raw.status_code == 200, path
            assert raw.headers["content-encoding"] == "gzip", path
            assert raw.headers["vary"] == "Accept-Encoding"
            policy = raw.headers["content-security-policy"]
            assert policy == CONTENT_SECURITY_POLICY
            assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
            file = CONSOLE_DIR / (path.removeprefix("/console/") or "index.html")
            # httpx decoded it: the file's exact bytes; the wire carried fewer.
            assert raw.content == file.read_bytes(), path
            assert int(raw.headers["content-length"]) < file.stat().st_size, path
            plain = await client.get(path, headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in plain.headers
            assert plain.content == file.read_bytes()
            assert int(plain.headers["content-length"]) == file.stat().st_size


async def test_vendored_files_cached_for_good_ours_revalidated(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        for path, cache in ((VENDORED, IMMUTABLE), ("/console/js/live.js", REVALIDATE)):
            for encoding in ("gzip", "identity"):
                first = await client.get(path, headers={"Accept-Encoding": encoding})
                assert first.headers["cache-control"] == cache
                etag = first.headers["etag"]
                # The compressed body is another representation: a weak validator.
                assert etag.startswith("W/") == (encoding == "gzip"), etag
                again = await client.get(
                    path, headers={"Accept-Encoding": encoding, "If-None-Match": etag}
                )
                assert again.status_code == 304, (path, encoding)
                assert again.headers["cache-control"] == cache


async def test_console_serves_nothing_outside_its_folder(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server) as client:
        outside = await client.get("/console/..%2f..%2fconsole.py")
        missing = await client.get("/console/js/nothing.js")
        posted = await client.post("/console/")
    assert (outside.status_code, missing.status_code, posted.status_code) == (404, 404, 405)


async def test_graphql_responses_stay_uncompressed(api_server: str) -> None:
    """Compression is the console's files' alone: GraphQL (and its streams) untouched."""
    async with httpx.AsyncClient(base_url=api_server) as client:
        response = await client.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"Accept-Encoding": "gzip"},
        )
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.json() == {"data": {"__typename": "Query"}}
