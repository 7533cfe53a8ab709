"""Provenance of a run: what was computed (fingerprint), where (host), with what (versions, commit).

The fingerprint decides whether a stored run may be reused by a later session, so it hashes file
*contents* (never mtimes or absolute paths): a fresh checkout of the same code reuses old runs, any
edit to a listed file or to the config invalidates them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

DEFAULT_PACKAGES = ("torch", "numpy", "scipy", "mir_eval", "wandb", "pytest", "pytest-ablation")


def fingerprint(config: Mapping, code_files: Iterable[str | Path]) -> str:
    """Short sha256 of the canonical JSON of `config` and the bytes of `code_files`.

    Files are hashed in sorted path order, each prefixed by its length so that moving bytes from
    one file to the next changes the hash. A missing file raises: silently skipping it would let
    changed code reuse stale results.
    """
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    for path in sorted({Path(p).resolve() for p in code_files}):
        data = path.read_bytes()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:16]


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
