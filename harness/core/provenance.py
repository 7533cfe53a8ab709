"""Provenance of a run: where it was computed (host), with what (package versions, git commit).

What it was computed from (its inputs, which decide reuse) is harness.core.inputs.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

DEFAULT_PACKAGES = ("torch", "numpy", "scipy", "mir_eval", "wandb", "pytest", "pytest-ablation")


def package_versions(names: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of `names`; packages that are not installed are left out."""
    versions = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def git_commit(cwd: str | Path = ".") -> str | None:
    """`HEAD` of the repository at `cwd`, with "+dirty" if tracked files have uncommitted changes.

    None outside a git repository, without commits, or without git: provenance must never make a
    run fail.
    """
    try:
        head = _git(cwd, "rev-parse", "HEAD")
        dirty = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _git(cwd: str | Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


def host() -> str:
    """Name of this machine, as stored with each run's owner (liveness checks compare it)."""
    return socket.gethostname()
