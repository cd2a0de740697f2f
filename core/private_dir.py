"""Directories only their owner may enter: `.data/` holds secrets.env, the development
signing key, the broker's credentials and the database, all readable to anyone who
can list it otherwise (the umask's 0755)."""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dir(path: Path) -> Path:
    """`path` as a directory of mode 0700, created (parents too) if missing, tightened if
    it exists; its parents, when created here, get the umask's mode."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def owner_only_files() -> None:
    """Files and directories this process (and every child it starts) creates from now on
    are its owner's only (umask 077): the database the stand-in writes into `.data/`,
    the broker's files, anything a later version adds there."""
    os.umask(0o077)
