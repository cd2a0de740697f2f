"""README's architecture section names only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A path the way the diagrams write one: a top-level package, then modules or folders.
# (not a topic such as $share/ingest/devices/+/...: no slash before it)
MODULE_PATH = re.compile(
    r"(?<![/\w])((?:api|graph|models|services|ingest|live|firmware|core|simulator|devstack)/"
    r"[\w/<>.*]*)"
)


def architecture() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Architecture") :]
    return section[: section.index("\n### ", 1)]


def test_readme_architecture_names_existing_modules() -> None:
    named = set(MODULE_PATH.findall(architecture()))
    assert len(named) > 30, named
    missing = []
    for path in sorted(named):
        path = path.rstrip(".")
        if "<" in path:  # graph/<domain>/: one per domain
            path = path.split("<")[0]
        if "*" in path:  # services/alert*, models/*.py: at least one module matches
            if not list(ROOT.glob(path if path.endswith(".py") else path + ".py")):
                missing.append(path)
            continue
        if not (ROOT / path).exists():
            missing.append(path)
    assert not missing, f"README's architecture names modules that do not exist: {missing}"
