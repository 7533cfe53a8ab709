"""Real pytest sessions against broken results stores: each ends with the one clear message
(which file, what is wrong, the fix), no traceback, never a green exit, and the runs finished
before a failure stay in the store.

Sessions run in a subprocess. As root, file modes bind nobody (CAP_DAC_OVERRIDE), so the session
runs under `setpriv` without that capability: a mode-0444 store is then read-only to it too.

Covered: a store that cannot be used from the start (garbage, truncated, another program's
database, a newer store, a directory, a read-only file or folder; and with xdist) and a disk
that fills up mid-session (SQLite's max_page_count everywhere; a real 1 MiB tmpfs where root
can mount one).
A store turning read-only mid-session cannot be staged: the session holds the file open for
writing, so a chmod does not affect it and Linux refuses a read-only remount (EBUSY).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.core.store import Store
from tests.stores import BROKEN, modes_apply, populated, snapshot, toy

STORE = Path(".ablation/results.sqlite")
SETPRIV = shutil.which("setpriv")
def session(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A pytest session in a subprocess, in which file modes bind (see the module's doc)."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    if not modes_apply(pytester.path):
        if SETPRIV is None:
            pytest.skip("root without setpriv: file modes cannot be made to bind")
        command = [SETPRIV, "--bounding-set=-dac_override,-dac_read_search", *command]
    return pytester.run(*command, timeout=300)


def output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def error_block(result: pytest.RunResult) -> list[str]:
    """The lines of the terminal summary's "ablation results store error" section."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines)
                 if re.fullmatch(r"=+ ablation results store error =+", line))
    end = next(i for i in range(start + 1, len(lines)) if re.fullmatch(r"=+ .* =+", lines[i]))
    return lines[start + 1:end]


def assert_clean(result: pytest.RunResult) -> None:
    """No traceback of any kind (pytest's own shows `E   ` lines), never a green exit."""
    text = output(result)
    for sign in ("Traceback", "INTERNALERROR", "ERROR collecting", "sqlite3."):
        assert sign not in text, text
    assert not re.search(r"^E ", text, re.M), text
    assert result.ret != pytest.ExitCode.OK


def read_only_file(path: Path) -> Path:
    populated(path).chmod(0o444)
    return path


def read_only_folder(path: Path) -> Path:
    populated(path).parent.chmod(0o555)
    return path


def directory(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


# name -> (how to break the store at `path`, what the message says after the store's path)
UNUSABLE: dict[str, tuple[Callable[[Path], Path], str]] = {
    **BROKEN,
    "read-only file": (read_only_file, "is read-only ("),
    "read-only folder": (read_only_folder, "is read-only (SQLITE_"),
    "directory": (directory, "is a directory: pass a file path (--ablation-store PATH)"),
}


@pytest.fixture
def writable_again(pytester: pytest.Pytester) -> Iterator[None]:
    """Leave every folder writable, so that pytest can clean its temporary folders."""
    yield
    for folder in (pytester.path, *pytester.path.rglob("*")):
        if folder.is_dir():
            folder.chmod(0o755)


@pytest.mark.usefixtures("writable_again")
@pytest.mark.parametrize(("kind", "workers"),
                         [(kind, "0") for kind in UNUSABLE] + [("garbage", "2")])
def test_a_store_unusable_from_the_start_ends_the_session_with_its_message(
        pytester: pytest.Pytester, kind: str, workers: str):
    make, problem = UNUSABLE[kind]
    pytester.makepyfile(test_toy=toy())
    path = make(pytester.path / STORE)
    before = None if path.is_dir() else snapshot(path)
    result = session(pytester, "-n", workers)
    assert_clean(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = output(result)
    [message] = [line for line in text.splitlines() if problem in line]  # said once
    shown = path.parent if kind == "read-only folder" else path
    assert f"{shown} {problem}" in message or f"{shown} of results store {path}" in message
    assert "--ablation-store" in message or kind == "newer"
    assert before is None or snapshot(path) == before  # nothing of ours was added to it


@pytest.fixture
def tmpfs(pytester: pytest.Pytester) -> Iterator[Path]:
    """A 1 MiB file system of its own (root only), unmounted afterwards."""
    folder = pytester.path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True)


# conftest.py of the session: just before the run `better-seed1`, the disk fills up
FILL_PAGES = """
import pytest

from harness.items import SESSION_KEY


@pytest.hookimpl(trylast=True)
def pytest_runtest_setup(item):
    if item.name.endswith("-better-seed1]"):
        db = item.config.stash[SESSION_KEY].store.db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")  # no page more: SQLITE_FULL
"""
FILL_DISK = """
import pytest


@pytest.hookimpl(trylast=True)
def pytest_runtest_setup(item):
    if item.name.endswith("-better-seed1]"):
        with open("small/filler", "wb") as filler:
            try:
                while True:
                    filler.write(bytes(65536))
                    filler.flush()
            except OSError:  # no space left on device
                pass
"""


@pytest.mark.parametrize("fill", ["max_page_count", "tmpfs"])
def test_a_full_disk_stops_the_session_and_keeps_the_finished_runs(
        pytester: pytest.Pytester, request: pytest.FixtureRequest, fill: str):
    # every run row needs new pages (its config is big), so the first run after the disk fills
    # cannot be stored
    pytester.makepyfile(test_toy=toy(seeds=3, base='{"padding": "x" * 6000}'))
    if fill == "tmpfs":
        path = request.getfixturevalue("tmpfs") / "results.sqlite"
        pytester.makeconftest(FILL_DISK)
    else:
        path = pytester.path / STORE
        pytester.makeconftest(FILL_PAGES)
    result = session(pytester, "-v", "--ablation-store", str(path))
    assert_clean(result)
    assert result.ret == pytest.ExitCode.INTERRUPTED  # the session stopped after that run
    message = (f"the disk holding results store {path} is full: free space; runs finished so "
               f"far are kept in the store")
    assert error_block(result) == [message]
    result.stdout.fnmatch_lines(["*-better-seed1] FAILED*", "*Interrupted: the disk holding*"])
    passed = sorted(re.findall(r"-(\w+-seed\d)\] PASSED", result.stdout.str()))
    assert passed == ["base-seed0", "base-seed1", "base-seed2", "better-seed0"]
    with Store(path, readonly=True) as store:
        kept = sorted(f"{r.variant}-seed{r.seed}" for r in store.runs() if r.status == "done")
    assert kept == passed


@pytest.mark.usefixtures("writable_again")
def test_a_store_that_cannot_be_created_ends_the_session_after_collection(
        pytester: pytest.Pytester):
    pytester.makepyfile(test_toy=toy())
    folder = pytester.path / ".ablation"
    folder.mkdir()
    folder.chmod(0o555)  # no store yet, and none can be made
    result = session(pytester)
    assert_clean(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [message] = [line for line in output(result).splitlines() if "is read-only" in line]
    assert str(folder) in message and "--ablation-store" in message
    assert not list(folder.iterdir())


@pytest.mark.usefixtures("writable_again")
def test_plain_tests_run_whatever_the_store_folder(pytester: pytest.Pytester):
    """The plugin loads in every session; without a study it never needs the store."""
    pytester.makepyfile(test_plain="def test_x():\n    assert True\n")
    folder = pytester.path / ".ablation"
    folder.mkdir()
    folder.chmod(0o555)
    session(pytester).assert_outcomes(passed=1)
