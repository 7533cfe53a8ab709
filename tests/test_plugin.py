"""The pytest layer in real pytest sessions (pytester): ids, selection, verdicts, store, reports.

Every toy study is pure Python: a run's metric is 0.5 + a seed-shared draw + a small per-variant
jitter + the variant's gain, so `better` (gain 0.2) beats `base` by a planted 0.2 and `twin`
(gain 0) is pure noise against `base`. The results store is the default
`.ablation/results.sqlite` under pytester's rootdir.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import pytest

# In-process runs (pytester.runpytest) drop the modules first imported inside them, and numpy
# cannot be imported twice in one process: the statistics' imports must predate every run.
import harness.core.verdicts  # noqa: F401
from harness.core.study import StudyError, ablation

VARIANTS = '{"base": {"gain": 0.0}, "better": {"gain": 0.2}, "twin": {"gain": 0.0}}'
TWO_VARIANTS = '{"base": {"gain": 0.0}, "better": {"gain": 0.2}}'
ONE_SETTING = 'tiers={"synthetic": {"noise": [0.1]}}'
TWO_SETTINGS = 'tiers={"synthetic": {"noise": [0.1, 0.2]}}'
WITH_REAL = 'tiers={"synthetic": {"noise": [0.1, 0.2]}, "real": {"dataset": ["x"]}}'
BETTER_GT_BASE = '"better > base", metric="model/labels/acc", margin=0.05'
HYP = "better>base[model/labels/acc]"
STORE = ".ablation/results.sqlite"


def esc(text: str) -> str:
    """`text` as a literal inside an fnmatch pattern ("[" and "]" are pattern syntax there)."""
    return "".join(f"[{c}]" if c in "[]" else c for c in text)


def toy(*, seeds: int = 4, tiers: str = ONE_SETTING, expects: Sequence[str] = (BETTER_GT_BASE,),
        marks: Sequence[str] = (), prelude: Sequence[str] = (), variants: str = VARIANTS,
        params: str = "run, seed, config") -> str:
    """Source of a toy study module with one study function `test_x(params)`.

    `expects` are the argument lists of `study.expect(...)`, `marks` decorator lines put above
    `@study`, `prelude` lines run first in the body (they see `run`, `seed`, `config`).
    """
    lines = [
        "import os",
        "import random",
        "from pathlib import Path",
        "",
        "import pytest",
        "",
        "from harness import ablation",
        "",
        f"study = ablation(variants={variants}, seeds={seeds}, base={{'jitter': 0.02}},",
        f"                 {tiers})",
        "",
        "",
        *marks,
        "@study",
        f"def test_x({params}):",
        *(f"    {line}" for line in prelude),
        "    gain = float(os.environ.get(f'TOY_GAIN_{run.variant}', config['gain']))",
        "    shared = random.Random(seed).gauss(0, config.get('noise', 0.1))",
        "    own = random.Random(f'{seed}-{run.variant}').gauss(0, config['jitter'])",
        "    return {'model': {'labels': {'acc': 0.5 + shared + own + gain}}}",
        "",
        "",
        *(f"study.expect({args})" for args in expects),
        "",
    ]
    return "\n".join(lines)


COUNT_CALLS = "Path('calls.txt').open('a').write(f'{run.variant}-{seed}\\n')"


def calls(pytester: pytest.Pytester) -> list[str]:
    """The runs the toy's body computed so far (see COUNT_CALLS), in call order."""
    path = pytester.path / "calls.txt"
    return path.read_text().split() if path.exists() else []


def store_rows(pytester: pytest.Pytester, query: str, *args: object) -> list[sqlite3.Row]:
    db = sqlite3.connect(pytester.path / STORE)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


def latest_session_runs(pytester: pytest.Pytester) -> list[sqlite3.Row]:
    return store_rows(
        pytester, "SELECT * FROM runs WHERE session ="
                  " (SELECT session FROM sessions ORDER BY started_at DESC, rowid DESC LIMIT 1)"
                  " ORDER BY id")


def summary(output: str) -> list[str]:
    """The lines of the "ablation results" section of a terminal report, trailing blanks cut."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"=+ ablation results =+$", line))
    end = next(i for i in range(start + 1, len(lines)) if re.match(r"=+ .* =+$", lines[i]))
    section = [line.rstrip() for line in lines[start + 1:end]]
    while section and not section[-1]:
        section.pop()
    return section


def hypothesis_tables(output: str) -> list[list[str]]:
    """Every "hypotheses" table of a report, as lists of lines."""
    lines = [line.rstrip() for line in output.splitlines()]
    tables = []
    for i, line in enumerate(lines):
        if line == "hypotheses":
            rows = []
            for row in lines[i + 1:]:
                if not row and rows:
                    break
                if row:
                    rows.append(row)
            tables.append(rows)
    return tables


def report(pytester: pytest.Pytester, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "report", "--store", str(pytester.path / STORE), *args],
        cwd=pytester.path, capture_output=True, text=True, timeout=120, check=False)


# -- 1. ids --------------------------------------------------------------------------------------


def test_collect_only_lists_run_and_hypothesis_ids(pytester: pytest.Pytester):
    pytester.makepyfile(test_ids=toy(seeds=2, tiers=TWO_SETTINGS, variants=TWO_VARIANTS))
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    listed = [line for line in result.stdout.lines if line.startswith("test_ids.py::")]
    assert listed == [
        "test_ids.py::test_x[synthetic-noise=0.1-base-seed0]",
        "test_ids.py::test_x[synthetic-noise=0.1-base-seed1]",
        "test_ids.py::test_x[synthetic-noise=0.1-better-seed0]",
        "test_ids.py::test_x[synthetic-noise=0.1-better-seed1]",
        "test_ids.py::test_x[synthetic-noise=0.2-base-seed0]",
        "test_ids.py::test_x[synthetic-noise=0.2-base-seed1]",
        "test_ids.py::test_x[synthetic-noise=0.2-better-seed0]",
        "test_ids.py::test_x[synthetic-noise=0.2-better-seed1]",
        f"test_ids.py::test_x[synthetic-noise=0.1]::{HYP}",
        f"test_ids.py::test_x[synthetic-noise=0.2]::{HYP}",
    ]


# -- 2. selection ----------------------------------------------------------------------------
# The selection toy: 2 variants x 3 seeds x (2 synthetic settings + 1 real) = 18 runs, and one
# hypothesis per setting = 3 hypothesis items; the 7 real-tier items skip without --real.


def selection_toy(marks: Sequence[str] = ()) -> str:
    return toy(seeds=3, tiers=WITH_REAL, marks=marks, variants=TWO_VARIANTS)


def test_k_selects_a_tier(pytester: pytest.Pytester):
    pytester.makepyfile(test_sel=selection_toy())
    result = pytester.runpytest("-k", "synthetic")
    result.assert_outcomes(passed=12 + 2, deselected=6 + 1)


def test_k_selects_a_variant_and_the_hypotheses_that_name_it(pytester: pytest.Pytester):
    pytester.makepyfile(test_sel=selection_toy())
    result = pytester.runpytest("-k", "better")
    # better runs: 6 synthetic + 3 real (skipped); all 3 hypotheses (the real one skipped)
    result.assert_outcomes(passed=6 + 2, skipped=3 + 1, deselected=9)


def test_m_hypothesis_selects_only_hypothesis_items(pytester: pytest.Pytester):
    pytester.makepyfile(test_sel=selection_toy())
    result = pytester.runpytest("-m", "hypothesis", "-v")
    result.assert_outcomes(passed=2, skipped=1, deselected=18)
    result.stdout.fnmatch_lines([f"*test_x[[]synthetic-noise=0.1[]]::{esc(HYP)} PASSED*"])
    result.stdout.no_fnmatch_line("*seed0*PASSED*")


def test_verbose_output_shows_hypothesis_node_ids(pytester: pytest.Pytester):
    pytester.makepyfile(test_sel=selection_toy())
    result = pytester.runpytest("-m", "hypothesis", "-v")
    result.stdout.fnmatch_lines([
        f"test_sel.py::test_x[[]synthetic-noise=0.1[]]::{esc(HYP)} PASSED*",
        f"test_sel.py::test_x[[]synthetic-noise=0.2[]]::{esc(HYP)} PASSED*",
        f"test_sel.py::test_x[[]real-dataset=x[]]::{esc(HYP)} SKIPPED*",
    ])


def test_user_mark_reaches_run_and_hypothesis_items(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\nmarkers =\n    slow: a slow study\n")
    pytester.makepyfile(test_sel=selection_toy(marks=["@pytest.mark.slow"]))
    deselected = pytester.runpytest("-m", "not slow")
    deselected.assert_outcomes(deselected=21)
    selected = pytester.runpytest("-m", "slow and hypothesis")
    selected.assert_outcomes(passed=2, skipped=1, deselected=18)


# -- 3. the real tier ----------------------------------------------------------------------------


def test_real_tier_is_skipped_without_real(pytester: pytest.Pytester):
    pytester.makepyfile(test_sel=selection_toy())
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=14, skipped=7)
    result.stdout.fnmatch_lines(["SKIPPED [[]*[]] *real-data tier: run it with --real*"])


def test_real_tier_runs_with_real(pytester: pytest.Pytester):
    pytester.makepyfile(test_sel=selection_toy())
    result = pytester.runpytest("--real", "-v")
    result.assert_outcomes(passed=21)
    result.stdout.fnmatch_lines([
        "*test_x[[]real-dataset=x-better-seed2[]] PASSED*",
        f"*test_x[[]real-dataset=x[]]::{esc(HYP)} PASSED*",
    ])


# -- 4. verdicts -------------------------------------------------------------------------------


def test_planted_effect_is_supported(pytester: pytest.Pytester):
    pytester.makepyfile(test_v=toy())
    result = pytester.runpytest()
    result.assert_outcomes(passed=12 + 1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"{esc(HYP)}*model/labels/acc*SUPPORTED"])


def test_reversed_claim_is_contradicted(pytester: pytest.Pytester):
    pytester.makepyfile(test_v=toy(expects=['"base > better", metric="model/labels/acc"']))
    result = pytester.runpytest()
    result.assert_outcomes(passed=12, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*CONTRADICTED: model/labels/acc: base > better: CONTRADICTED",
        "  base: 0.6* +- 0.* (mean +- std, n=4)",
        "  better: 0.7* +- 0.* (mean +- std, n=4)",
        "  difference base - better: -0.1* (SD 0.*), 90% CI [[]-0.*, -0.*[]]",
        "  p supporting 0.9*, contradicting 0.00*; holm-adjusted *",
    ])


def test_pure_noise_is_inconclusive_with_a_seeds_estimate(pytester: pytest.Pytester):
    pytester.makepyfile(test_v=toy(expects=['"twin > base", metric="model/labels/acc"']))
    result = pytester.runpytest()
    result.assert_outcomes(passed=12, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*INCONCLUSIVE: model/labels/acc: twin > base: INCONCLUSIVE",
        "*roughly * seeds would decide it*",
    ])


# -- 5. a hypothesis selected alone ------------------------------------------------------------


def test_hypothesis_selected_alone_computes_its_runs(pytester: pytest.Pytester):
    pytester.makepyfile(test_alone=toy(expects=[
        BETTER_GT_BASE,
        '"better >= base", metric="model/labels/acc", margin=0.01, name="not_worse"']))
    result = pytester.runpytest("-k", "not_worse")
    result.assert_outcomes(passed=1, deselected=12 + 1)
    rows = latest_session_runs(pytester)
    assert sorted((r["variant"], r["seed"]) for r in rows) == [
        (v, s) for v in ("base", "better") for s in range(4)]
    assert {(r["status"], r["source"]) for r in rows} == {("done", "run")}
    verdicts = store_rows(pytester, "SELECT hypothesis, status FROM verdicts")
    assert ("not_worse", "supported") in [tuple(v) for v in verdicts]


def test_hypothesis_selected_alone_resolves_the_bodys_fixtures(pytester: pytest.Pytester):
    pytester.makeconftest("""
        from pathlib import Path

        import pytest


        @pytest.fixture(scope="session")
        def base_acc():
            return 0.5


        @pytest.fixture
        def bonus(base_acc, ablation_run):
            yield base_acc - 0.5
            Path("teardowns.txt").open("a").write(f"{ablation_run.seed}\\n")
    """)
    pytester.makepyfile(test_alone=toy(params="run, seed, config, bonus",
                                       prelude=["assert bonus == 0.0"]))
    result = pytester.runpytest("-k", "base and not seed")
    result.assert_outcomes(passed=1, deselected=12)
    assert len(latest_session_runs(pytester)) == 8
    assert sorted((pytester.path / "teardowns.txt").read_text().split()) == sorted("01230123")


# -- 6. store reuse ------------------------------------------------------------------------------


def test_reuse_takes_unchanged_runs_from_the_store(pytester: pytest.Pytester):
    pytester.makepyfile(test_reuse=toy(prelude=[COUNT_CALLS]))
    pytester.runpytest().assert_outcomes(passed=13)
    assert len(calls(pytester)) == 12
    result = pytester.runpytest("-k", "better", "--reuse")
    result.assert_outcomes(passed=5, deselected=8)
    assert len(calls(pytester)) == 12, "a run was recomputed although --reuse had it stored"
    rows = latest_session_runs(pytester)
    assert {r["variant"] for r in rows} == {"base", "better"}
    assert {r["source"] for r in rows} == {"store"}
    assert all(r["reused_from"] is not None for r in rows)
    result.stdout.fnmatch_lines(["base (store) *"])
    result.stdout.fnmatch_lines(["better (store) *"])


def test_reuse_recomputes_after_a_code_change(pytester: pytest.Pytester):
    module = pytester.makepyfile(test_reuse=toy(prelude=[COUNT_CALLS]))
    pytester.runpytest().assert_outcomes(passed=13)
    module.write_text(module.read_text() + "\nSCALE = 1.0  # a code change: a new fingerprint\n")
    result = pytester.runpytest("-k", "better", "--reuse")
    result.assert_outcomes(passed=5, deselected=8)
    assert sorted(calls(pytester)[12:]) == sorted(
        f"{v}-{s}" for v in ("base", "better") for s in range(4))
    rows = latest_session_runs(pytester)
    assert {r["source"] for r in rows} == {"run"}
    result.stdout.no_fnmatch_line("*(store)*")


def test_without_reuse_the_store_is_not_read(pytester: pytest.Pytester):
    pytester.makepyfile(test_reuse=toy(prelude=[COUNT_CALLS]))
    pytester.runpytest().assert_outcomes(passed=13)
    pytester.runpytest("-k", "better").assert_outcomes(passed=5, deselected=8)
    assert len(calls(pytester)) == 12 + 8


def test_ablation_store_option_sets_the_store_path(pytester: pytest.Pytester):
    pytester.makepyfile(test_store=toy())
    pytester.runpytest("--ablation-store", "elsewhere/runs.sqlite").assert_outcomes(passed=13)
    assert not (pytester.path / STORE).exists()
    db = sqlite3.connect(pytester.path / "elsewhere" / "runs.sqlite")
    try:
        assert db.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone() == (12,)
    finally:
        db.close()


def test_seed_offset_runs_fresh_seeds(pytester: pytest.Pytester):
    pytester.makepyfile(test_offset=toy(seeds=3))
    result = pytester.runpytest("--seed-offset", "100", "-v")
    result.assert_outcomes(passed=9 + 1)
    result.stdout.fnmatch_lines(["*test_x[[]synthetic-noise=0.1-base-seed100[]] PASSED*"])
    result.stdout.no_fnmatch_line("*-seed0*")
    rows = latest_session_runs(pytester)
    assert sorted({r["seed"] for r in rows}) == [100, 101, 102]


# -- 7. -x, --lf, --junitxml ---------------------------------------------------------------------


def test_x_stops_at_the_first_failing_item(pytester: pytest.Pytester):
    pytester.makepyfile(test_stop=toy(prelude=[
        "if seed == 1:", "    raise RuntimeError('seed 1 breaks')"]))
    result = pytester.runpytest("-x")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])


def test_lf_reruns_the_failed_hypothesis(pytester: pytest.Pytester,
                                         monkeypatch: pytest.MonkeyPatch):
    pytester.makepyfile(test_lf=toy())
    monkeypatch.setenv("TOY_GAIN_better", "0.0")
    pytester.runpytest().assert_outcomes(passed=12, failed=1)
    monkeypatch.delenv("TOY_GAIN_better")
    result = pytester.runpytest("--lf", "-v")
    result.assert_outcomes(passed=1, deselected=12)
    result.stdout.fnmatch_lines([
        "run-last-failure: rerun previous 1 failure*",
        f"*test_x[[]synthetic-noise=0.1[]]::{esc(HYP)} PASSED*",
    ])


def test_junitxml_carries_the_verdict(pytester: pytest.Pytester):
    pytester.makepyfile(test_junit=toy())
    result = pytester.runpytest("--junitxml=junit.xml")
    result.assert_outcomes(passed=13)
    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    # junit's name is the node id after the module; it ends in the hypothesis label
    [case] = [c for c in cases if c.get("name") == f"test_x[synthetic-noise=0.1]::{HYP}"]
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["ablation_status"] == "supported"
    assert props["ablation_claim"] == "better > base"
    assert props["ablation_metric"] == "model/labels/acc"
    assert props["ablation_test"] == "t"
    assert props["ablation_n"] == "4"
    assert float(props["ablation_p"]) < 0.05
    assert float(props["ablation_p_adj"]) < 0.05
    assert float(props["ablation_ci_lo"]) < float(props["ablation_diff"]) < float(
        props["ablation_ci_hi"])


# -- 8. errors -------------------------------------------------------------------------------------


def test_raising_body_fails_its_run_and_the_hypothesis_names_the_run(pytester: pytest.Pytester):
    pytester.makepyfile(test_err=toy(prelude=[
        "if run.variant == 'better' and seed == 2:",
        "    raise RuntimeError('boom in better seed 2')"]))
    result = pytester.runpytest()
    result.assert_outcomes(passed=11, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*_ test_x[[]synthetic-noise=0.1-better-seed2[]] _*",
        ">*raise RuntimeError('boom in better seed 2')",
        "E*RuntimeError: boom in better seed 2",
    ])
    result.stdout.fnmatch_lines([
        f"*_ test_x[[]synthetic-noise=0.1[]]::{esc(HYP)} _*",
        "*run better-seed2 has no metrics: the run failed*",
    ])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_body_returning_none_fails_with_a_clear_message(pytester: pytest.Pytester):
    pytester.makepyfile(test_none=toy(prelude=["if seed == 0:", "    return None"]))
    result = pytester.runpytest()
    result.assert_outcomes(passed=9, failed=4)
    result.stdout.fnmatch_lines([
        "*test_x[[]synthetic-noise=0.1-base-seed0[]] returned None: a study's test body must "
        "return its metrics*"])
    result.stdout.fnmatch_lines(["*cannot be decided: run better-seed0 has no metrics*"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_unknown_metric_lists_the_available_metrics(pytester: pytest.Pytester):
    pytester.makepyfile(test_metric=toy(expects=['"better > base", metric="model/labels/f1"']))
    result = pytester.runpytest()
    result.assert_outcomes(passed=12, failed=1)
    result.stdout.fnmatch_lines([
        "*unknown metric 'model/labels/f1' for better-seed0; its metrics are: model/labels/acc*"])


def test_declaration_error_is_a_collection_error_naming_file_and_line(
        pytester: pytest.Pytester):
    source = toy(expects=[BETTER_GT_BASE, '"better > nope", metric="model/labels/acc"'])
    module = pytester.makepyfile(test_bad=source)
    line = source.splitlines().index('study.expect("better > nope", metric="model/labels/acc")') + 1
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([
        "*ERROR collecting test_bad.py*",
        f"*StudyError: {module}:{line}: hypothesis 'better > nope' names unknown variant 'nope'*",
    ])
    result.assert_outcomes(errors=1)


# -- 9. summary and reports ------------------------------------------------------------------------


def test_summary_is_printed_once(pytester: pytest.Pytester):
    pytester.makepyfile(test_sum=toy(tiers=TWO_SETTINGS))
    result = pytester.runpytest()
    result.assert_outcomes(passed=2 * 13)
    assert result.stdout.str().count("ablation results") == 1
    section = summary(result.stdout.str())
    assert section[0] == "test_sum.py::test_x · synthetic-noise=0.1"
    assert "test_sum.py::test_x · synthetic-noise=0.2" in section


def test_summary_is_printed_once_with_xdist(pytester: pytest.Pytester):
    pytester.makepyfile(test_sum=toy(tiers=TWO_SETTINGS))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2 * 13)
    assert result.stdout.str().count("ablation results") == 1


def test_no_ablation_tables(pytester: pytest.Pytester):
    pytester.makepyfile(test_sum=toy())
    result = pytester.runpytest("--no-ablation-tables")
    result.assert_outcomes(passed=13)
    assert "ablation results" not in result.stdout.str()


def test_summary_md_writes_markdown_tables(pytester: pytest.Pytester):
    pytester.makepyfile(test_sum=toy())
    result = pytester.runpytest("--summary-md", "out/summary.md")
    result.assert_outcomes(passed=13)
    path = pytester.path / "out" / "summary.md"
    result.stdout.fnmatch_lines([f"ablation tables written to *{path.name}"])
    text = path.read_text(encoding="utf-8")
    assert "### test_sum.py::test_x · synthetic-noise=0.1" in text
    assert "**labels**" in text
    assert re.search(r"^\| variant +\| head +\| acc +\| n +\| wall s +\| peak MB +\| device +\|$",
                     text, re.M)
    assert re.search(r"^\| better +\| model +\| \*\*0\.7\d\d ± 0\.\d+\*\*", text, re.M)
    assert "**hypotheses**" in text
    assert re.search(rf"^\| {re.escape(HYP)} +\| model/labels/acc .*\| SUPPORTED +\|$", text, re.M)


def test_report_prints_the_same_tables_as_the_terminal(pytester: pytest.Pytester):
    pytester.makepyfile(test_rep=toy(tiers=TWO_SETTINGS))
    result = pytester.runpytest()
    result.assert_outcomes(passed=2 * 13)
    done = report(pytester)
    assert done.returncode == 0, done.stderr
    printed = [line.rstrip() for line in done.stdout.splitlines()]
    while printed and not printed[-1]:
        printed.pop()
    assert printed == summary(result.stdout.str())


def test_report_markdown_matches_summary_md(pytester: pytest.Pytester):
    pytester.makepyfile(test_rep=toy())
    pytester.runpytest("--summary-md", "summary.md").assert_outcomes(passed=13)
    done = report(pytester, "--format", "md")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (pytester.path / "summary.md").read_text().strip()


def test_report_csv(pytester: pytest.Pytester):
    pytester.makepyfile(test_rep=toy())
    pytester.runpytest().assert_outcomes(passed=13)
    done = report(pytester, "--format", "csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "study,setting,variant,head,group,metric,mean,std,n,source"
    assert [line.split(",")[:6] for line in lines[1:]] == [
        ["test_rep.py::test_x", "synthetic-noise=0.1", v, "model", "labels", "acc"]
        for v in ("base", "better", "twin")]
    assert all(line.endswith(",4,run") for line in lines[1:])


def test_report_json(pytester: pytest.Pytester):
    pytester.makepyfile(test_rep=toy())
    pytester.runpytest().assert_outcomes(passed=13)
    done = report(pytester, "--format", "json")
    assert done.returncode == 0, done.stderr
    [section] = json.loads(done.stdout)
    assert (section["study"], section["setting"]) == ("test_rep.py::test_x", "synthetic-noise=0.1")
    [verdict] = section["verdicts"]
    assert (verdict["hypothesis"], verdict["status"]) == (HYP, "supported")
    assert {row["variant"] for row in section["summary"]} == {"base", "better", "twin"}


# -- 10. xdist gives the same verdicts -----------------------------------------------------------


def test_xdist_gives_the_same_verdicts(pytester: pytest.Pytester):
    pytester.makepyfile(test_same=toy(tiers=TWO_SETTINGS, expects=[
        BETTER_GT_BASE,
        '"twin > base", metric="model/labels/acc"',
        '"twin == base", metric="model/labels/acc", margin=0.1',
    ]))
    serial = pytester.runpytest("-p", "no:cacheprovider")
    parallel = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    serial.assert_outcomes(passed=2 * (12 + 2), failed=2)
    parallel.assert_outcomes(passed=2 * (12 + 2), failed=2)
    tables = hypothesis_tables(serial.stdout.str())
    assert len(tables) == 2
    assert tables == hypothesis_tables(parallel.stdout.str())


def test_synthetic_and_real_verdicts_side_by_side(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_tiers="""
        import random
        from harness import ablation

        study = ablation(variants={"base": {}, "better": {"gain": 0.2}}, seeds=4,
                         tiers={"synthetic": {"noise": [0.1, 0.2]}, "real": {"dataset": ["x"]}})

        @study
        def test_t(run):
            rng = random.Random(f"{run.seed}-{run.variant}")
            return {"acc": 0.5 + run.config.get("gain", 0) + rng.gauss(0, 0.01)}

        study.expect("better > base", metric="acc")
    """)
    result = pytester.runpytest("--real")
    result.assert_outcomes(passed=24 + 3)
    result.stdout.fnmatch_lines([
        "test_tiers.py::test_t · verdicts by tier",
        "*hypothesis*synthetic*real*",
        "*better>base[[]acc[]]*noise=0.1: SUPPORTED; noise=0.2: SUPPORTED*dataset=x: SUPPORTED*",
    ])


def test_progress_bar_per_run_with_the_session_count(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_prog="""
        from harness import ablation

        study = ablation(variants={"a": {}, "b": {}}, seeds=1,
                         tiers={"synthetic": {"n": [1]}, "real": {"dataset": ["x"]}})

        @study
        def test_p(run, log):
            log.steps(4)
            for step in range(1, 5):
                log(step, loss=1.0 / step)
            return {"acc": 1.0}
    """)
    shown = pytester.runpytest_subprocess("--ablation-progress", "on")
    shown.assert_outcomes(passed=2, skipped=2)  # the real tier's runs need --real: not counted
    shown.stderr.fnmatch_lines(["*[[]runs 1/2[]] synthetic-n=1-a-seed0*4/4*loss=0.25*",
                                "*[[]runs 2/2[]] synthetic-n=1-b-seed0*"])
    quiet = pytester.runpytest_subprocess()  # auto: not a terminal here, so no bars
    assert "[runs" not in quiet.stderr.str()


def test_a_timed_out_run_fails_once_and_its_dependents_report_it(pytester: pytest.Pytester):
    """pytest-timeout fails the item from a signal handler (a BaseException): the run is stored
    as failed, not released, so the three hypotheses that need it do not train it again."""
    pytester.makepyfile(test_hang=toy(prelude=[
        COUNT_CALLS,
        "if run.variant == 'better' and seed == 1:",
        "    import time; time.sleep(60)"], expects=[
        BETTER_GT_BASE, '"better > twin", metric="model/labels/acc"',
        '"better >= base", metric="model/labels/acc", margin=0.01, name="not_worse"']))
    result = pytester.runpytest_subprocess("--timeout", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=12 - 1, failed=1 + 3)
    assert calls(pytester).count("better-1") == 1
    result.stdout.fnmatch_lines(["*_ test_x[[]synthetic-noise=0.1-better-seed1[]] _*",
                                 "Timeout (>2.0s) from pytest-timeout."])
    result.stdout.fnmatch_lines(["*run better-seed1 has no metrics: the run failed*Timeout*"])
    assert result.duration < 30


OPT_IN = """
from harness import ablation

study = ablation(variants={"a": {}}, seeds=1, opt_in=["full"],
                 tiers={"quick": {}, "full": {}, "real": {}})

@study
def check_scale(run):  # a study's body is collected whatever it is called
    return {"x": 1.0}
"""


def test_opt_in_tiers_run_only_when_asked_for(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_scale=OPT_IN)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*opt-in tier 'full': run it with --tier full*",
                                 "*real-data tier: run it with --real*"])
    pytester.runpytest("-p", "no:cacheprovider", "--tier", "full").assert_outcomes(
        passed=2, skipped=1)
    pytester.runpytest("-p", "no:cacheprovider", "--tier", "full", "--real").assert_outcomes(
        passed=3)
    with pytest.raises(StudyError, match=r"opt_in=.*must list tiers of the study"):
        ablation(variants={"a": {}}, opt_in=["ful"], tiers={"full": {}})
