"""A study body's run values cannot be shadowed, and misuse outside a study is a clear error."""

from __future__ import annotations

import pytest

import harness.core.verdicts  # noqa: F401  (numpy before the first in-process run)

STUDY = """
from harness import ablation

study = ablation(variants={"a": {}, "b": {"lr": 0.2}}, seeds=2,
                 tiers={"synthetic": {"noise": [0.5]}})


@study
def test_s(run, seed, config, knobs, tier, variant, device, log, checkpoint):
    assert seed == run.seed and variant == run.variant and tier == run.tier == "synthetic"
    assert config == run.config and config["noise"] == 0.5
    assert dict(knobs) == {"noise": 0.5} and dict(run.knobs) == {"noise": 0.5}
    assert device == run.device == "cpu" and checkpoint == run.checkpoint
    assert checkpoint.parent.is_dir()
    log(1, loss=0.5)
    return {"acc": 0.5 + seed}
"""


def test_conftest_fixtures_named_like_run_values_never_reach_the_body(
        pytester: pytest.Pytester):
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def config():
            return {"noise": "the user's own config"}

        @pytest.fixture
        def seed():
            return 12345

        @pytest.fixture
        def device():
            return "the user's device"
    """)
    pytester.makepyfile(test_s=STUDY)
    pytester.runpytest().assert_outcomes(passed=4)


def test_knobs_is_a_read_only_mapping(pytester: pytest.Pytester):
    pytester.makepyfile(test_s=STUDY.replace(
        "    log(1, loss=0.5)", "    log(1, loss=0.5)\n    knobs['noise'] = 1.0"))
    result = pytester.runpytest()
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(["*TypeError: 'mappingproxy' object does not support item*"])


def test_a_fixture_gets_the_run_through_ablation_run(pytester: pytest.Pytester):
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def data(ablation_run):
            return [ablation_run.seed] * 3
    """)
    pytester.makepyfile(test_s="""
        from harness import ablation

        study = ablation(variants={"a": {}}, seeds=[4, 7])

        @study
        def test_s(run, data):
            assert data == [run.seed] * 3
            return {"acc": 1.0}
    """)
    pytester.runpytest().assert_outcomes(passed=2)


def test_a_plain_test_asking_for_the_run_gets_a_clear_error(pytester: pytest.Pytester):
    pytester.makepyfile(test_plain="""
        def test_plain(ablation_run):
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*test_plain.py::test_plain: fixture 'ablation_run' is the run of an ablation study's "
        "test body*this test is not one, so it has no run*"])
    result.stdout.no_fnmatch_line("*AttributeError*")


def test_a_plain_test_keeps_its_own_seed_fixture(pytester: pytest.Pytester):
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def seed():
            return 3
    """)
    pytester.makepyfile(test_plain="def test_plain(seed):\n    assert seed == 3\n")
    pytester.runpytest().assert_outcomes(passed=1)


def test_an_expect_on_a_study_that_decorates_nothing_is_a_collection_error(
        pytester: pytest.Pytester):
    source = """
        from harness import ablation

        study = ablation(variants={"a": {}, "b": {}}, seeds=2)
        study.expect("a > b", metric="acc")


        def test_forgot_the_decorator(run):
            return {"acc": 1.0}
    """
    module = pytester.makepyfile(test_orphan=source)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        f"*{module}:3: this study never decorates a test function, so its runs and its 1 "
        "hypotheses would never run*"])


def test_paths_from_knob_values_and_study_names_stay_inside_and_never_collide(
        pytester: pytest.Pytester):
    project = pytester.path / "project"
    project.mkdir()
    (project / "test_p.py").write_text("""
from harness import ablation

study = ablation(variants={"a": {}}, seeds=1, name="../../evil",
                 tiers={"t": {"model": ["facebook/opt-125m", "../../escape", "a/b", "a_b"]}})


@study
def test_p(run):
    assert run.checkpoint.parent.is_dir()
    run.checkpoint.write_text(run.config["model"])
    run.log(1, loss=1.0)
    return {"acc": 1.0}
""")
    before = set(pytester.path.parent.iterdir())
    result = pytester.runpytest_subprocess(project, "--rootdir", project, "-p",
                                           "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert set(pytester.path.parent.iterdir()) == before  # nothing written next to the project
    assert sorted(p.name for p in project.iterdir() if p.name != "__pycache__") == [
        ".ablation", "test_p.py"]
    written = sorted(p.read_text() for p in (project / ".ablation").rglob("*.pt"))
    assert written == sorted(["facebook/opt-125m", "../../escape", "a/b", "a_b"])
    [session] = (project / ".ablation" / "runs").iterdir()
    [study] = session.iterdir()
    runs = sorted(p.name for p in study.iterdir())
    assert len(runs) == 4 and "a-seed0-model=a_b" in runs  # a plain name stays readable
    assert all((study / r / "steps.jsonl").read_text().count("\n") == 1 for r in runs)
