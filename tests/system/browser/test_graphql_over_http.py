"""GraphQL over HTTP conformance: graphql-http's server audits against the real API.

The audits (tests/system/browser/audit.mjs) cover the spec's MUSTs (errors), SHOULDs
(warnings) and MAYs (notices): application/json for old clients and
application/graphql-response+json, status codes, GET and POST. Every audit must pass
but the notices, which are optional behaviour.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.system.browser.conftest import NODE_DIR, require_node


async def run_audits(url: str) -> list[dict[str, Any]]:
    node = require_node()
    # Asynchronously: the API under audit is served by this very event loop.
    process = await asyncio.create_subprocess_exec(
        node,
        "audit.mjs",
        url,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    results: list[dict[str, Any]] = json.loads(stdout)["results"]
    return results


def describe(failures: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"- {f['status'].upper()} {f['name']} [{f['id']}]: {f.get('reason')}"
        f" (HTTP {f.get('httpStatus')}, {f.get('contentType')}, body {f.get('body')!r})"
        for f in failures
    )


async def test_graphql_over_http_audits_pass(api_server: str) -> None:
    results = await run_audits(f"{api_server}/graphql")
    assert len(results) > 50, "graphql-http ran fewer audits than expected"
    failures = [r for r in results if r["status"] in {"warn", "error"}]
    ok = sum(r["status"] == "ok" for r in results)
    assert not failures, f"{len(failures)} of {len(results)} audits failed ({ok} ok):\n" + describe(
        failures
    )
