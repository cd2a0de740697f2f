"""The web console's files (api/static/console, docs/console.md), read from disk.

- Every GraphQL document the console sends (js/ops.js) is valid against schema.graphql:
  a schema change that breaks the console fails here, not in a person's browser.
- The page runs no inline script or style and names no other host; every file it or a
  module imports exists; the vendored files are the ones scripts/vendor-console wrote.
- The first load (the page and everything it loads) fits 300 KB gzip-compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

from graphql import build_schema, parse, validate
from graphql.language import OperationDefinitionNode

from api.console import CONSOLE_DIR, _gzipped
from tests.net import ROOT

OPS = CONSOLE_DIR / "js" / "ops.js"
CONSTANT = re.compile(r"^(?:export )?const (\w+) = `(.*?)`;", re.DOTALL | re.MULTILINE)
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
IMPORT = re.compile(r"""^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]""", re.MULTILINE)
ABSOLUTE_URL = re.compile(r"(?:https?|wss?)://[^\s'\"`)]*", re.IGNORECASE)
# Not a request: the SVG namespace createElementNS needs.
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}
FIRST_LOAD_BUDGET = 300 * 1024


def documents() -> dict[str, str]:
    """ops.js's template constants, their ${...} filled from the others, by name."""
    raw = dict(CONSTANT.findall(OPS.read_text()))

    def expand(text: str) -> str:
        return PLACEHOLDER.sub(lambda match: expand(raw[match.group(1)]), text)

    return {name: expand(text) for name, text in raw.items()}


def operations() -> dict[str, str]:
    return {
        name: text
        for name, text in documents().items()
        if text.lstrip().startswith(("query", "mutation", "subscription"))
    }


def test_every_console_operation_validates_against_the_schema() -> None:
    schema = build_schema((ROOT / "schema.graphql").read_text())
    found = operations()
    assert len(found) >= 40, sorted(found)
    names = []
    for constant, text in found.items():
        document = parse(text)
        errors = validate(schema, document)
        assert not errors, f"{constant}: {[e.message for e in errors]}"
        (definition,) = document.definitions
        assert isinstance(definition, OperationDefinitionNode)
        assert definition.name is not None, constant
        names.append(definition.name.value)
    # Named, and named apart from the contract's: the API's logs tell the console's.
    assert all(name.startswith("Console") for name in names), names
    assert len(set(names)) == len(names)


def test_every_exported_operation_is_used() -> None:
    sources = "\n".join(p.read_text() for p in (CONSOLE_DIR / "js").rglob("*.js") if p != OPS)
    unused = [name for name in operations() if not re.search(rf"\b{name}\b", sources)]
    assert not unused, unused


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.inline_scripts = 0
        self.inline_styles = 0
        self.handlers: list[str] = []
        self._script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.references += [v for k, v in attributes.items() if k in {"src", "href"} and v]
        self.handlers += [name for name in attributes if name.startswith("on")]
        self.inline_styles += int("style" in attributes or tag == "style")
        self._script_without_src = tag == "script" and "src" not in attributes

    def handle_endtag(self, tag: str) -> None:
        self._script_without_src = False

    def handle_data(self, data: str) -> None:
        self.inline_scripts += int(self._script_without_src and bool(data.strip()))


def page() -> PageParser:
    parser = PageParser()
    parser.feed((CONSOLE_DIR / "index.html").read_text())
    return parser


def local(reference: str) -> Path | None:
    """The file a relative reference of the page names; None for #fragments, data: and ../graphql."""
    if reference.startswith(("#", "data:", "../")):
        return None
    return CONSOLE_DIR / reference


def test_page_runs_no_inline_code_and_names_no_other_host() -> None:
    parsed = page()
    assert (parsed.inline_scripts, parsed.inline_styles, parsed.handlers) == (0, 0, [])
    for path in [
        CONSOLE_DIR / "index.html",
        *CONSOLE_DIR.glob("*.css"),
        *CONSOLE_DIR.rglob("js/**/*.js"),
    ]:
        urls = set(ABSOLUTE_URL.findall(path.read_text())) - ALLOWED_URLS
        assert not urls, f"{path.name} names {urls}"
    # The one link outside the console's folder is GraphiQL, on the same origin.
    outside = [r for r in parsed.references if r.startswith("../")]
    assert outside == ["../graphql"]


def modules() -> set[Path]:
    """main.js and every module it imports, transitively (all must exist)."""
    seen: set[Path] = set()
    pending = [CONSOLE_DIR / "js" / "main.js"]
    while pending:
        module = pending.pop()
        assert module.is_file(), f"imported but missing: {module.relative_to(CONSOLE_DIR)}"
        if module in seen:
            continue
        seen.add(module)
        for specifier in IMPORT.findall(module.read_text()):
            assert specifier.startswith("./") or specifier.startswith("../"), specifier
            pending.append((module.parent / specifier).resolve())
    return seen


def test_every_file_the_page_loads_exists() -> None:
    references = [path for r in page().references if (path := local(r)) is not None]
    assert references and all(path.is_file() for path in references), references
    loaded = modules()
    on_disk = {p.resolve() for p in (CONSOLE_DIR / "js").rglob("*.js")}
    assert loaded == on_disk, f"modules nothing imports: {on_disk - loaded}"


def test_vendored_files_match_their_checksums() -> None:
    """What scripts/vendor-console copied from console/package-lock.json's packages."""
    vendor = CONSOLE_DIR / "vendor"
    listed = dict(
        reversed(line.split(maxsplit=1))
        for line in (vendor / "SHA256SUMS").read_text().splitlines()
    )
    present = {
        p.relative_to(vendor).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in vendor.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    }
    assert present == listed
    lock = (ROOT / "console" / "package-lock.json").read_text()
    for name in listed:
        package, _, version = name.split("/")[0].rpartition("-")
        assert f'"node_modules/{package}": {{\n      "version": "{version}"' in lock, name


def test_first_load_fits_the_budget_compressed() -> None:
    """The page, its stylesheets and scripts, every module: gzip as the API serves them."""
    files = {path for r in page().references if (path := local(r)) is not None}
    files |= modules()
    files.add(CONSOLE_DIR / "index.html")
    total = 0
    for path in files:
        stat = path.stat()
        body = _gzipped(str(path), stat.st_mtime_ns, stat.st_size)
        assert gzip.decompress(body) == path.read_bytes()
        total += len(body)
    assert total <= FIRST_LOAD_BUDGET, total
