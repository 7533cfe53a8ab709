"""`python -m harness report`: it only reads the store, renders what is in it in every format,
finds the store pytest would use, and says what is wrong in one line."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core import inifile
from harness.core.report import main
from harness.core.store import Store
from tests.specs import Spec
from tests.stores import (
    BROKEN,
    OWNER,
    SESSION,
    garbage,
    populated,
    snapshot,
    toy,
    version_1,
)

PROG = "python -m harness report"


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of the report run with `args`."""
    capsys.readouterr()  # what ran before is not the report's
    try:
        status = main(list(args))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def one_error(err: str) -> str:
    """The error line of a failed report; there must be exactly one line."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: "), err
    return lines[0].removeprefix(f"{PROG}: error: ")


# -- the report never writes -----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_store_it_cannot_read_is_one_line_and_left_as_it_was(tmp_path, capsys, kind):
    make, problem = BROKEN[kind]
    path = make(tmp_path / "results.sqlite")
    before = snapshot(path)
    for args in ([], ["--list"], ["--format", "json"]):
        status, out, err = report(capsys, "--store", str(path), *args)
        assert (status, out) == (2, "")
        assert problem in one_error(err) and str(path) in err
    assert snapshot(path) == before


def test_an_older_store_is_reported_as_it_is(tmp_path, capsys):
    path = version_1(tmp_path / "results.sqlite")
    before = snapshot(path)
    status, out, err = report(capsys, "--store", str(path))
    assert (status, err) == (0, "")
    assert out.startswith("heads · synthetic-noise_sigma=0.5") and "SUPPORTED" in out
    status, out, _ = report(capsys, "--store", str(path), "--list")
    assert status == 0 and out.startswith(SESSION)
    assert snapshot(path) == before


def test_a_whole_store_is_left_as_it_was(tmp_path, capsys):
    path = populated(tmp_path / "results.sqlite")
    before = snapshot(path)
    for fmt in ("text", "md", "csv", "json"):
        assert report(capsys, "--store", str(path), "--format", fmt)[0] == 0
    assert snapshot(path) == before


# -- what it renders ---------------------------------------------------------------------------


def with_nan(path: Path) -> Path:
    """A whole store whose variant b has one NaN seed and one infinite seed."""
    populated(path)
    with Store(path) as store:
        for seed, value in ((7, math.nan), (8, math.inf)):
            _, row = store.claim(SESSION, Spec(variant="b", seed=seed), fingerprint="fp",
                                 owner=OWNER, config={})
            store.finish(row.id, metrics={"acc": value}, failures=[], duration=1.0,
                         device="cpu", versions={}, git_commit=None)
    return path


def test_every_format_renders_non_finite_values(tmp_path, capsys):
    path = with_nan(tmp_path / "results.sqlite")
    shown = {}
    for fmt in ("text", "md", "csv", "json"):
        status, shown[fmt], err = report(capsys, "--store", str(path), "--format", fmt)
        assert (status, err) == (0, "")
    assert "nan (1 of 5), inf (1 of 5)" in shown["text"] and "nan (1 of 5)" in shown["md"]

    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    [section] = json.loads(shown["json"], parse_constant=refuse)
    [b] = [row for row in section["summary"] if row["variant"] == "b"]
    assert (b["mean"], b["n"], b["non_finite_seeds"]) == (None, 5, {"nan": 1, "inf": 1})
    assert [row["non_finite"] for row in section["runs"] if row["seed"] in (7, 8)] == [
        {"value": "nan"}, {"value": "inf"}]


def test_csv_tables(tmp_path, capsys):
    path = populated(tmp_path / "results.sqlite")
    tables = {}
    for table in ("summary", "runs", "verdicts"):
        status, out, _ = report(capsys, "--store", str(path), "--format", "csv", "--table", table)
        assert status == 0
        tables[table] = list(csv.DictReader(io.StringIO(out)))
    assert report(capsys, "--store", str(path), "--format", "csv")[1].splitlines()[0] == (
        "study,setting,variant,head,group,metric,mean,std,n,source")  # the default, as before
    assert [(r["variant"], r["n"]) for r in tables["summary"]] == [("a", "3"), ("b", "3")]
    assert [(r["variant"], r["seed"], r["metric"], r["value"], r["status"])
            for r in tables["runs"]][:2] == [("a", "0", "acc", "0.5", "done"),
                                             ("a", "1", "acc", "0.51", "done")]
    assert len(tables["runs"]) == 6
    [verdict] = tables["verdicts"]
    assert (verdict["hypothesis"], verdict["status"], verdict["p"]) == ("b>a[acc]", "supported",
                                                                        "0.001")
    status, _, err = report(capsys, "--store", str(path), "--table", "runs")
    assert status == 2 and "add --format csv" in err


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    """`report | head -3`: the reader closes the pipe before the report has written."""
    path = populated(tmp_path / "results.sqlite")
    child = subprocess.Popen([sys.executable, "-m", "harness", "report", "--store", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.stdout.close()
    _, err = child.communicate(timeout=120)
    assert (child.returncode, err) == (0, "")


# -- which store -------------------------------------------------------------------------------

LAYOUTS = {
    "pytest.ini": ("pytest.ini", "[pytest]\nablation_store = stores/{name}\n"),
    "pyproject ini_options": ("pyproject.toml",
                              '[tool.pytest.ini_options]\nablation_store = "stores/{name}"\n'),
    "tox.ini": ("tox.ini", "[pytest]\nablation_store = stores/{name}\n"),
    "setup.cfg": ("setup.cfg", "[tool:pytest]\nablation_store = stores/{name}\n"),
    "pyproject native": ("pyproject.toml", '[tool.pytest]\nablation_store = "stores/{name}"\n'),
    "pytest.toml": ("pytest.toml", '[pytest]\nablation_store = "stores/{name}"\n'),
    "no ablation_store": ("pytest.ini", "[pytest]\n"),
}


@pytest.mark.parametrize("where", ["rootdir", "subfolder"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_report_reads_the_store_pytest_writes(pytester: pytest.Pytester, capsys,
                                                  monkeypatch, layout, where):
    if layout in ("pyproject native", "pytest.toml") and pytest.version_tuple < (9,):
        pytest.skip("pytest 9 reads native TOML configuration")
    name, text = LAYOUTS[layout]
    (pytester.path / name).write_text(text.format(name="runs.sqlite"))
    (pytester.path / "src" / "deep").mkdir(parents=True)  # a folder above the config's
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_toy.py").write_text(toy())
    cwd = pytester.path / "tests" if where == "subfolder" else pytester.path
    monkeypatch.chdir(cwd)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
    written = sorted(pytester.path.rglob("*.sqlite"))
    assert written == [inifile.store_path(cwd)]
    assert written[0].relative_to(pytester.path).parts[0] == (
        ".ablation" if layout == "no ablation_store" else "stores")
    assert inifile.store_path(pytester.path / "tests") == inifile.store_path(pytester.path)
    status, out, err = report(capsys)
    assert (status, err) == (0, "") and out.startswith("tests/test_toy.py::test_toy · synthetic")


def test_without_any_configuration_the_store_is_under_the_current_folder(tmp_path):
    assert inifile.store_path(tmp_path) == tmp_path / ".ablation" / "results.sqlite"
    (tmp_path / "setup.py").write_text("")
    (tmp_path / "sub").mkdir()
    assert inifile.store_path(tmp_path / "sub") == tmp_path / ".ablation" / "results.sqlite"
    (tmp_path / "sub" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert inifile.store_path(tmp_path / "sub") == tmp_path / "sub" / ".ablation" / "results.sqlite"


def test_an_unreadable_configuration_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options\n")
    monkeypatch.chdir(tmp_path)
    status, _, err = report(capsys)
    assert status == 2 and "pytest configuration" in one_error(err)


# -- errors ----------------------------------------------------------------------------------


def test_nothing_to_report_is_one_line(tmp_path, capsys):
    whole = populated(tmp_path / "results.sqlite")
    status, _, err = report(capsys, "--store", str(whole), "--session", "nope")
    assert status == 2 and one_error(err) == f"session 'nope' has no runs in {whole}; see --list"
    with Store(tmp_path / "empty.sqlite") as empty:
        empty.sessions()  # the schema, and no session
    status, _, err = report(capsys, "--store", str(tmp_path / "empty.sqlite"))
    assert status == 2 and "holds no session yet" in one_error(err)
    status, _, err = report(capsys, "--store", str(tmp_path / "missing.sqlite"))
    assert status == 2 and one_error(err) == (f"no results store at {tmp_path}/missing.sqlite: "
                                              f"run the studies first or pass --store PATH")
    status, _, err = report(capsys, "--store", str(tmp_path))
    assert status == 2 and one_error(err) == (f"results store {tmp_path} is a directory: pass a "
                                              f"file path (--store PATH)")
    status, _, err = report(capsys, "--store", str(garbage(tmp_path / "g.sqlite")))
    assert status == 2 and "or pass --store PATH" in one_error(err)
    status, _, err = report(capsys, "--store", str(whole), "-o", str(tmp_path / "no" / "x.md"))
    assert status == 2 and one_error(err).startswith(f"cannot write {tmp_path}/no/x.md")
