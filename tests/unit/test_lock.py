"""The dependency locks: complete, hashed, in step with pyproject.toml, and what gets installed.

No network: these read the files. `scripts/lock` (make lock) is what rewrites them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.test_compose import dockerfile_instructions

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME_LOCK = ROOT / "requirements.txt"
DEV_LOCK = ROOT / "requirements-dev.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins(lock: Path) -> dict[str, tuple[str, Marker | None, int]]:
    """name -> (version, marker, number of hashes) for every requirement in a lock."""
    found: dict[str, tuple[str, Marker | None, int]] = {}
    current: str | None = None
    for line in lock.read_text().splitlines():
        if match := PIN.match(line):
            name, version, marker = match.groups()
            current = canonicalize_name(name)
            assert current not in found, f"{lock.name}: {name} pinned twice"
            found[current] = (version, Marker(marker) if marker else None, 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, marker, hashes = found[current]
            found[current] = (version, marker, hashes + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            current = None
            assert not line.startswith(("-e", "git+", "http")), f"{lock.name}: unpinned {line}"
    return found


def wanted(extra: str | None) -> list[Requirement]:
    """pyproject's requirements (plus the dev extra) that apply to this interpreter."""
    project = PYPROJECT["project"]
    texts = list(project["dependencies"])
    if extra:
        texts += project["optional-dependencies"][extra]
    texts += PYPROJECT["build-system"]["requires"]
    requirements = [Requirement(text) for text in texts]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


@pytest.mark.parametrize(
    ("lock", "extra"), [(RUNTIME_LOCK, None), (DEV_LOCK, "dev")], ids=["runtime", "dev"]
)
def test_lock_satisfies_every_pyproject_requirement(lock: Path, extra: str | None) -> None:
    locked = pins(lock)
    problems = []
    for requirement in wanted(extra):
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement} is not in {lock.name}")
        elif not requirement.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{requirement}: {lock.name} pins {locked[name][0]}")
    assert not problems, "pyproject.toml changed without `make lock`:\n" + "\n".join(problems)


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_lock_every_pin_hashed(lock: Path) -> None:
    locked = pins(lock)
    assert len(locked) > 20
    assert not [name for name, (_, _, hashes) in locked.items() if hashes == 0]


def test_lock_dev_keeps_runtime_versions() -> None:
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    assert set(runtime) <= set(dev)
    assert {n: v[0] for n, v in runtime.items()} == {n: dev[n][0] for n in runtime}


def test_install_uses_locks_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK := requirements-dev.txt" in makefile
    assert re.search(r"pip install [^\n]*--require-hashes[^\n]*-r \$\(LOCK\)", makefile)
    docker_runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    assert any("--require-hashes" in args and "requirements.txt" in args for args in docker_runs)
    # Nothing installed outside the lock resolves dependencies of its own.
    for line in [*makefile.splitlines(), *docker_runs]:
        if "pip install" in line and "--require-hashes" not in line:
            assert "--no-deps" in line, line
