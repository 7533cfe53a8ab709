"""Regression gating in real pytest sessions: guards against a baseline session, paired seed by
seed, named by session id, store file or git ref; and the report's comparison from the stores.

The toy's `DROP` environment variable plants a regression in `better` only: its accuracy falls
by DROP on average, by a different amount per seed (as a real bug's effect would).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

import harness.core.verdicts  # noqa: F401  (numpy before the first in-process run)

STUDY = """
import os, random
from harness import ablation

study = ablation(variants={"base": {}, "better": {"gain": 0.2}}, seeds=5,
                 tiers={"synthetic": {"noise": [0.1]}})


@study
def test_g(run):
    drop = float(os.environ.get("DROP", 0)) * (run.variant == "better")
    shared = random.Random(run.seed).gauss(0, 0.1)
    own = random.Random(f"{run.seed}-{run.variant}").gauss(0, 0.01)
    jitter = random.Random(f"drop-{run.seed}").uniform(0.5, 1.5)
    return {"acc": 0.5 + run.config.get("gain", 0) + shared + own - drop * jitter,
            "loss": 1.0 - shared + drop * jitter}


study.expect("better > base", metric="acc", margin=0.05)
study.guard("acc", margin=0.01)
study.guard("loss", margin=0.01, variants=["better"])
"""
GUARDS = ["base>=baseline[[]acc[]]", "better>=baseline[[]acc[]]", "better<=baseline[[]loss[]]"]
STORE = ".ablation/results.sqlite"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("DROP", raising=False)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    pytester.makepyfile(test_g=STUDY)
    return pytester


def sessions(pytester: pytest.Pytester) -> list[str]:
    db = sqlite3.connect(pytester.path / STORE)
    try:
        return [s for (s,) in db.execute("SELECT session FROM sessions ORDER BY started_at")]
    finally:
        db.close()


def guard_rows(pytester: pytest.Pytester) -> dict[str, tuple]:
    db = sqlite3.connect(pytester.path / STORE)
    try:
        latest = sessions(pytester)[-1]
        return {h: (status, baseline) for h, status, baseline in db.execute(
            "SELECT hypothesis, status, baseline FROM verdicts WHERE session = ?"
            " AND baseline IS NOT NULL", (latest,))}
    finally:
        db.close()


def test_without_a_baseline_guards_are_skipped_with_the_way_to_give_one(project):
    result = project.runpytest("-rs")
    result.assert_outcomes(passed=10 + 1, skipped=3)
    result.stdout.fnmatch_lines(["SKIPPED [[]2[]] test_g.py:*: no baseline to compare with: pass "
                                 "--ablation-baseline*"])


def test_unchanged_code_passes_against_its_baseline_exactly(project):
    project.runpytest().assert_outcomes(passed=11, skipped=3)
    [baseline] = sessions(project)
    result = project.runpytest("--ablation-baseline", baseline, "-v")
    result.assert_outcomes(passed=10 + 1 + 3)
    for guard in GUARDS:
        result.stdout.fnmatch_lines([f"*::{guard} PASSED*"])
    result.stdout.fnmatch_lines([f"vs baseline (session {baseline})", "variant*metric*claim*",
                                 "base*acc*>= baseline*SUPPORTED"])
    assert set(guard_rows(project).values()) == {("supported", baseline)}


def test_a_planted_regression_fails_its_guard_only(project, monkeypatch):
    project.runpytest().assert_outcomes(passed=11, skipped=3)
    [baseline] = sessions(project)
    monkeypatch.setenv("DROP", "0.05")
    result = project.runpytest("--ablation-baseline", baseline)
    result.assert_outcomes(passed=10 + 1 + 1, failed=2)  # base's guard still passes
    result.stdout.fnmatch_lines([
        f"CONTRADICTED against the baseline, session {baseline} of *results.sqlite:",
        "acc: better >= better@baseline (margin 0.01): CONTRADICTED",
        "  better: 0.* +- 0.* (mean +- std, n=5)",
        "  better@baseline: 0.* +- 0.* (mean +- std, n=5)",
        "  difference better - better@baseline: -0.0* (SD 0.0*), 90% CI [[]-0.0*, -0.0*[]]",
    ])
    result.stdout.fnmatch_lines(["*loss: better <= better@baseline (margin 0.01): CONTRADICTED"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_the_baseline_may_be_another_store_file_or_a_git_ref(project, tmp_path):
    # another store file: e.g. the artifact CI saved on main
    other = tmp_path / "main.sqlite"
    project.runpytest(f"--ablation-store={other}").assert_outcomes(passed=11, skipped=3)
    project.runpytest(f"--ablation-baseline={other}").assert_outcomes(passed=14)
    # pytest finds its rootdir before plugins add options: a separate value outside the project
    # would root the session elsewhere (other study names, another store); said, not suffered
    misrooted = project.runpytest("--ablation-baseline", str(other))
    assert misrooted.ret == pytest.ExitCode.USAGE_ERROR
    misrooted.stderr.fnmatch_lines([f"*pytest took the value of --ablation-baseline ({other}) "
                                    f"for a test path and rooted this session at * "
                                    f"instead of {project.path}*write "
                                    f"--ablation-baseline={other}"])
    # git:REF: the newest session the store holds of that (clean) commit
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=project.path, check=True, capture_output=True)
    missing = project.runpytest("--ablation-baseline", "git:HEAD")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--ablation-baseline git:HEAD: the store * holds no session "
                                  "made at HEAD (commit *, clean checkout): run the studies "
                                  "there first*"])
    project.runpytest().assert_outcomes(passed=11, skipped=3)
    project.runpytest("--ablation-baseline", "git:HEAD").assert_outcomes(passed=14)


def test_an_unknown_baseline_is_a_usage_error_that_names_the_forms(project):
    project.runpytest().assert_outcomes(passed=11, skipped=3)
    result = project.runpytest("--ablation-baseline", "20990101-000000-nope00")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*not a file, not git:REF, and the store * has no such session; "
                                 "give a session id of the results store, git:REF*"])


def test_runs_missing_from_the_baseline_skip_or_fail_under_strict(project):
    project.runpytest().assert_outcomes(passed=11, skipped=3)
    [baseline] = sessions(project)
    (project.path / "test_g.py").write_text(STUDY.replace("seeds=5", "seeds=6"))
    result = project.runpytest("--ablation-baseline", baseline, "-rs")
    result.assert_outcomes(passed=12 + 1, skipped=3)
    result.stdout.fnmatch_lines(["*no baseline to compare with: run base-seed5 has no metrics*"
                                 "--ablation-baseline-strict fails instead*"])
    strict = project.runpytest("--ablation-baseline", baseline, "--ablation-baseline-strict")
    strict.assert_outcomes(passed=12 + 1, failed=3)


def test_the_report_compares_a_session_with_a_baseline_from_the_stores_alone(project, monkeypatch):
    project.runpytest().assert_outcomes(passed=11, skipped=3)
    [baseline] = sessions(project)
    monkeypatch.setenv("DROP", "0.05")
    project.runpytest().assert_outcomes(passed=11, skipped=3)  # no baseline given this time
    done = subprocess.run([sys.executable, "-m", "harness", "report", "--store",
                           str(project.path / STORE), "--baseline", baseline, "--format",
                           "json"], cwd=project.path, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    [section] = json.loads(done.stdout)
    rows = {v["hypothesis"]: v for v in section["verdicts"] if v["baseline"] == baseline}
    assert {h: v["status"] for h, v in rows.items()} == {
        "base>=baseline[acc]": "supported", "better>=baseline[acc]": "contradicted",
        "better<=baseline[loss]": "contradicted"}
    better = rows["better>=baseline[acc]"]
    assert better["mean_a"] < better["mean_b"] and better["diff"] < -0.01
