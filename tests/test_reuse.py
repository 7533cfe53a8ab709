"""Run identity and `--reuse` on users' own study layouts, in real pytest sessions.

A study's runs belong to where the study lives; a stored run is reused only when its config and
every input it recorded (the study's code, the project modules it imports, fixtures' modules,
`code=` files of any type, data files read while it ran) are unchanged, and a retrained run
says why.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

import harness.core.verdicts  # noqa: F401  (numpy before the first in-process run)

STORE = ".ablation/results.sqlite"

# A user's project: training code in their own package, a data file, a study per file.
HELPER = """
    import random


    def train(config, seed, variant):
        noise = random.Random(f"{seed}-{variant}").gauss(0, 0.01)
        return 0.5 + config.get("gain", 0.0) + random.Random(seed).gauss(0, 0.05) + noise
"""


def study_module(*, name: str = "", variants: str = '{"base": {}, "better": {"gain": 0.2}}',
                 body: str = "return {'acc': train(run.config, run.seed, run.variant)}",
                 params: str = "run", extra: str = "", code: str = "") -> str:
    options = (f", name={name!r}" if name else "") + (f", code={code}" if code else "")
    return textwrap.dedent(f"""
        import os
        from pathlib import Path
        from mypkg.train import train
        from harness import ablation

        NOTE = "calls.txt"
        VARIANTS = {variants}
        study = ablation(variants=VARIANTS, seeds=3{options})


        @study
        def test_model({params}):
            Path(NOTE).open("a").write(f"{{run.spec.study}}:{{run.variant}}-{{run.seed}}\\n")
            {body}


        study.expect("better > base", metric="acc", margin=0.1)
        {extra}
    """)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    pytester.mkpydir("mypkg")
    (pytester.path / "mypkg" / "train.py").write_text(textwrap.dedent(HELPER))
    pytester.syspathinsert()
    return pytester


def calls(pytester: pytest.Pytester) -> list[str]:
    path = pytester.path / "calls.txt"
    return path.read_text().split() if path.exists() else []


def latest_runs(pytester: pytest.Pytester) -> list[dict]:
    db = sqlite3.connect(pytester.path / STORE)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(
            "SELECT * FROM runs WHERE session = (SELECT session FROM runs ORDER BY id DESC"
            " LIMIT 1) ORDER BY id")]
    finally:
        db.close()


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A subprocess session: each sees the files as they are now (no module cache)."""
    return pytester.runpytest_subprocess(*args)


# -- identity ----------------------------------------------------------------------------------


def test_same_function_name_in_two_files_are_two_studies(project: pytest.Pytester):
    (project.path / "a").mkdir()
    (project.path / "b").mkdir()
    (project.path / "a" / "test_x.py").write_text(study_module())
    # b's "better" is no better: its claim must fail on b's own runs, not pass on a's
    (project.path / "b" / "test_y.py").write_text(study_module(
        variants='{"base": {}, "better": {"gain": 0.0}}'))
    result = run(project)
    result.assert_outcomes(passed=2 * 6 + 1, failed=1)
    result.stdout.fnmatch_lines(["FAILED b/test_y.py::test_model*better>base*"])
    assert sorted(set(c.split(":")[0] for c in calls(project))) == ["a/test_x.py", "b/test_y.py"]
    assert len(calls(project)) == 12  # both bodies ran every run
    studies = {r["study"] for r in latest_runs(project)}
    assert studies == {"a/test_x.py::test_model", "b/test_y.py::test_model"}


def test_same_explicit_name_in_two_files_is_a_collection_error(project: pytest.Pytester):
    (project.path / "test_a.py").write_text(study_module(name="heads"))
    (project.path / "test_b.py").write_text(study_module(name="heads"))
    result = run(project)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*two studies are named 'heads'*"])
    text = result.stdout.str()
    assert "test_a.py:" in text and "test_b.py:" in text
    assert calls(project) == []


def test_a_session_never_adopts_a_row_made_from_other_code(project: pytest.Pytester):
    """If a run's code changes during a session, its row (old fingerprint) is not taken."""
    project.makepyfile(test_m=study_module())
    from harness.core.store import Owner, Store
    from harness.core.study import RunSpec

    store = Store(project.path / STORE)
    spec = RunSpec("test_m.py::test_model", "default", (), "base", 0, {})
    _, row = store.claim("s1", spec, fingerprint="old", owner=Owner.current(), config={})
    store.finish(row.id, metrics={"acc": 9.0}, failures=[], duration=0.0, device="cpu",
                 versions={}, git_commit=None)
    assert store.claim("s1", spec, fingerprint="new", owner=Owner.current(), config={})[0] == \
        "conflict"
    from harness.core.runs import RunConflict, RunCoordinator

    coordinator = RunCoordinator(store, "s1", Owner.current())
    with pytest.raises(RunConflict, match="changed while the session ran"):
        coordinator.obtain(spec, fingerprint="new", compute=lambda: None)
    store.close()


# -- stale reuse --------------------------------------------------------------------------------


def reuse_notes(pytester: pytest.Pytester) -> dict[str, str | None]:
    return {f"{r['variant']}-{r['seed']}": r["note"] for r in latest_runs(pytester)}


def test_reuse_retrains_when_the_users_helper_module_changes(project: pytest.Pytester):
    project.makepyfile(test_m=study_module())
    run(project).assert_outcomes(passed=7)
    run(project, "--reuse").assert_outcomes(passed=7)
    assert len(calls(project)) == 6, "unchanged code must be reused"
    helper = project.path / "mypkg" / "train.py"
    helper.write_text(helper.read_text().replace("0.5 +", "0.6 +"))
    run(project, "--reuse").assert_outcomes(passed=7)
    assert len(calls(project)) == 12
    notes = reuse_notes(project)
    assert all(n.startswith("mypkg/train.py changed since run #") for n in notes.values()), notes


def test_comments_and_formatting_do_not_retrain(project: pytest.Pytester):
    module = project.makepyfile(test_m=study_module())
    run(project).assert_outcomes(passed=7)
    helper = project.path / "mypkg" / "train.py"
    helper.write_text("# a comment\n\n" + helper.read_text().replace("(config, seed, variant)",
                                                                     "(config,   seed,variant)"))
    module.write_text(module.read_text() + "\n# the end\n")
    run(project, "--reuse").assert_outcomes(passed=7)
    assert len(calls(project)) == 6


def test_reuse_retrains_when_a_non_python_file_of_a_code_package_changes(
        project: pytest.Pytester):
    (project.path / "mypkg" / "defaults.yaml").write_text("lr: 0.1\n")
    project.makepyfile(test_m=study_module(code='["mypkg"]'))
    run(project).assert_outcomes(passed=7)
    (project.path / "mypkg" / "defaults.yaml").write_text("lr: 0.2\n")
    run(project, "--reuse").assert_outcomes(passed=7)
    assert len(calls(project)) == 12
    assert set(reuse_notes(project).values()) >= {
        n for n in reuse_notes(project).values() if n.startswith("mypkg/defaults.yaml changed")}
    assert all("mypkg/defaults.yaml changed" in n for n in reuse_notes(project).values())


def test_reuse_retrains_when_a_data_file_a_fixture_reads_changes(project: pytest.Pytester):
    (project.path / "data").mkdir()
    (project.path / "data" / "offsets.json").write_text(json.dumps({"base": 0.0}))
    project.makeconftest("""
        import json

        import pytest


        @pytest.fixture(scope="session")
        def offsets():
            with open("data/offsets.json") as f:
                return json.load(f)
    """)
    project.makepyfile(test_m=study_module(
        params="run, offsets",
        body="return {'acc': train(run.config, run.seed, run.variant) + offsets['base']}"))
    run(project).assert_outcomes(passed=7)
    run(project, "--reuse").assert_outcomes(passed=7)
    assert len(calls(project)) == 6
    (project.path / "data" / "offsets.json").write_text(json.dumps({"base": 0.1}))
    run(project, "--reuse").assert_outcomes(passed=7)
    assert len(calls(project)) == 12
    assert all(n.startswith("data/offsets.json changed") for n in reuse_notes(project).values())


def test_editing_one_variant_retrains_that_variant_only(project: pytest.Pytester):
    module = project.makepyfile(test_m=study_module(
        variants='{"base": {}, "better": {"gain": 0.2}, "other": {"gain": 0.1}}'))
    run(project).assert_outcomes(passed=10)
    module.write_text(module.read_text().replace('"other": {"gain": 0.1}',
                                                 '"other": {"gain": 0.15}'))
    # a new hypothesis is a declaration too: it retrains nothing
    module.write_text(module.read_text() + '\nstudy.expect("other > base", metric="acc")\n')
    run(project, "--reuse").assert_outcomes(passed=11)
    assert sorted(calls(project)[9:]) == ["test_m.py::test_model:other-0",
                                         "test_m.py::test_model:other-1",
                                         "test_m.py::test_model:other-2"]
    notes = reuse_notes(project)
    assert notes["other-0"].startswith("config key gain changed (0.1 -> 0.15)")
    assert notes["base-0"] is None and notes["better-0"] is None


def test_editing_the_body_or_training_code_retrains_every_variant(project: pytest.Pytester):
    module = project.makepyfile(test_m=study_module())
    run(project).assert_outcomes(passed=7)
    module.write_text(module.read_text().replace("return {'acc'", "return {'acc2': 1.0, 'acc'"))
    run(project, "--reuse").assert_outcomes(passed=7)
    assert len(calls(project)) == 12
    assert all(n.startswith("test_m.py changed") for n in reuse_notes(project).values())


def test_the_newest_matching_stored_run_is_reused(project: pytest.Pytester):
    project.makepyfile(test_m=study_module())
    run(project).assert_outcomes(passed=7)
    run(project).assert_outcomes(passed=7)  # without --reuse: a second, newer computation
    newest = {r["key"]: r["id"] for r in latest_runs(project)}
    run(project, "--reuse").assert_outcomes(passed=7)
    assert {r["key"]: r["reused_from"] for r in latest_runs(project)} == newest
