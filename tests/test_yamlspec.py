"""Studies declared in YAML (harness/core/yamlspec.py): the same Study as the Python
declaration, errors that name the file, line, key path and fix, and sessions run from YAML
(where a YAML edit retrains only what its config changed)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest

import harness.core.verdicts  # noqa: F401  (numpy and scipy load before pytester snapshots)
from harness.core.study import Study, StudyError, ablation, sweep
from harness.core.yamlspec import load_study

FULL = """\
name: lm
seeds: [0, 1, 2]
metric: acc
base:
  lr: 0.01
  frac: 1.0
  temperature: 1.0
  size: small
  model: {depth: 2, norm: true}
variants:
  small: {}
  big: {size: big, model: {depth: 4}}
tiers:
  synthetic: {frac: [0.25, 0.5, 1.0], temperature: [0.5, 1.0]}
  one_at_a_time:
    sweep: {lr: [0.001, 0.1]}
    base: {lr: 0.01}
  full: {frac: [1.0]}
tier_config:
  full: {model: {depth: 3}}
opt_in: [full]
correction: bonferroni
tables: {metrics: [acc, loss]}
minimize: [perplexity]
code: [mypkg]
expect:
  - big > small
  - {claim: big >= small, metric: loss, margin: 0.1, alpha: 0.01, test: permutation, name: ok}
  - {claim: temperature=0.5 > temperature=1.0, variants: [big]}
trend:
  - {knob: frac, direction: increases, variants: [small]}
best:
  - {knob: temperature, expect: 0.5}
guard:
  - {metric: acc, margin: 0.01, variants: [big]}
"""


def python_twin() -> Study:
    study = ablation(
        name="lm", seeds=[0, 1, 2],
        base={"lr": 0.01, "frac": 1.0, "temperature": 1.0, "size": "small",
              "model": {"depth": 2, "norm": True}},
        variants={"small": {}, "big": {"size": "big", "model": {"depth": 4}}},
        tiers={"synthetic": {"frac": [0.25, 0.5, 1.0], "temperature": [0.5, 1.0]},
               "one_at_a_time": sweep({"lr": [0.001, 0.1]}, base={"lr": 0.01}),
               "full": {"frac": [1.0]}},
        tier_config={"full": {"model": {"depth": 3}}}, opt_in=["full"],
        correction="bonferroni", tables={"metrics": ["acc", "loss"]}, minimize=["perplexity"],
        code=["mypkg"])
    study.expect("big > small", metric="acc")
    study.expect("big >= small", metric="loss", margin=0.1, alpha=0.01, test="permutation",
                 name="ok")
    study.expect("temperature=0.5 > temperature=1.0", metric="acc", variants=["big"])
    study.trend("frac", metric="acc", direction="increases", variants=["small"])
    study.best("temperature", metric="acc", expect=0.5)
    study.guard("acc", margin=0.01, variants=["big"])
    return study


def declared(study: Study) -> dict[str, Any]:
    """Everything a study declares, less where it was declared."""
    def unplaced(items: list) -> list:
        return [dataclasses.replace(item, where="") for item in items]

    return {"name": study.name, "variants": study.variants, "seeds": study.seeds,
            "tiers": study.tiers, "base": study.base, "tier_config": study.tier_config,
            "sweeps": {t: (s.values, s.base) for t, s in study.sweeps.items()},
            "correction": study.correction, "tables": study.tables,
            "minimize": study.minimize, "code": study.code, "opt_in": study.opt_in,
            "hypotheses": unplaced(study.hypotheses), "claims": unplaced(study.claims),
            "guards": unplaced(study.guards),
            "runs": [(spec.id, spec.config) for spec in study.runs()]}


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def line_of(path: Path, text: str) -> int:
    """The first line of `path` holding `text` (1-based)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# -- a valid file --------------------------------------------------------------------------------


def test_a_yaml_study_is_the_same_study_as_its_python_declaration(tmp_path: Path):
    assert declared(load_study(write(tmp_path, FULL))) == declared(python_twin())


def test_declarations_point_at_their_yaml_lines(tmp_path: Path):
    path = write(tmp_path, FULL)
    study = load_study(path)
    assert study.where == f"{path}:1"
    assert [h.where for h in study.hypotheses] == [
        f"{path}:{line_of(path, 'big > small')}", f"{path}:{line_of(path, 'name: ok')}"]
    assert [c.where for c in study.claims] == [
        f"{path}:{line_of(path, text)}" for text in ("temperature=0.5 >", "knob: frac",
                                                     "knob: temperature")]
    assert study.guards[0].where == f"{path}:{line_of(path, 'margin: 0.01')}"


def test_a_relative_path_is_taken_from_the_calling_modules_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "studies"
    folder.mkdir()
    write(folder, "variants: {a: {}, b: {}}\nseeds: 2\n")
    module = folder / "declare.py"
    module.write_text("from harness.core.yamlspec import load_study\n"
                      "study = load_study('study.yaml')\n")
    monkeypatch.chdir(tmp_path)  # the working directory is not the module's folder
    spec = importlib.util.spec_from_file_location("declare", module)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    assert loaded.study.seeds == (0, 1)
    assert loaded.study.where == f"{folder / 'study.yaml'}:1"


def test_variants_and_tiers_left_empty_mean_no_overrides_and_no_knobs(tmp_path: Path):
    study = load_study(write(tmp_path, """
        variants:
          a:
          b: {}
        tiers:
          synthetic:
          real: {}
    """))
    assert study.variants == {"a": {}, "b": {}}
    assert [spec.id for spec in study.runs(seed_offset=0)][:2] == ["synthetic-a-seed0",
                                                                    "synthetic-a-seed1"]


def test_a_knob_named_like_a_path_sets_a_nested_key_of_base(tmp_path: Path):
    study = load_study(write(tmp_path, SCHEMA + "tiers:\n  synthetic: {model/width: [2, 4]}\n"))
    assert study.spec("synthetic", (("model/width", 4),), "narrow", 0).config["model"] == {
        "width": 4, "norm": True}


def test_without_base_configs_are_free_form(tmp_path: Path):
    study = load_study(write(tmp_path, "variants: {a: {x: 1}, b: {y: two}}\n"))
    assert study.variants == {"a": {"x": 1}, "b": {"y": "two"}}


def test_an_int_is_fine_where_base_has_a_float_and_null_in_base_takes_anything(tmp_path: Path):
    study = load_study(write(tmp_path, """
        base: {lr: 0.1, extra: null}
        variants: {a: {lr: 1}, b: {extra: [1, 2]}}
    """))
    assert study.spec("default", (), "b", 0).config == {"lr": 0.1, "extra": [1, 2]}


# -- errors: file, line, key path and fix ----------------------------------------------------


SCHEMA = """\
base:
  model: {width: 8, norm: true}
  lr: 0.01
  noise: 0.5
variants:
  narrow: {model: {width: 2}}
"""

ERRORS = [
    # (name, the file's text, the text of the line named, the message after "file:line: ")
    ("wrong type", SCHEMA + "  wide: {model: {width: sixteen}}\n", "sixteen",
     "variants.wide.model.width: expected an int (like base.model.width, 8), got 'sixteen'"),
    ("bool for number", SCHEMA + "  hot: {lr: true}\n", "hot:",
     "variants.hot.lr: expected a number (like base.lr, 0.01), got true"),
    ("misspelt config key", SCHEMA + "  wide: {model: {widht: 16}}\n", "widht",
     "variants.wide.model.widht: 'widht' is not a key of base.model: did you mean 'width'? "
     "every config key that variants, tiers or knobs set must be in base, with its default "
     "(its keys: width, norm)"),
    ("unknown study key", SCHEMA + "seed: 3\n", "seed:",
     "seed: unknown key 'seed': did you mean 'seeds'?"),
    ("unknown claim key", SCHEMA + "  wide: {}\nexpect:\n  - {claim: wide > narrow, "
     "metric: acc, margn: 0.1}\n", "margn", "expect[0].margn: unknown key 'margn': did you "
     "mean 'margin'?"),
    ("knob not in base", SCHEMA + "tiers:\n  synthetic: {nois: [0.5, 1.0]}\n", "nois:",
     "tiers.synthetic.nois: knob 'nois' is not a key of base: did you mean 'noise'? a knob sets "
     "a config key, so declare it in base with its default"),
    ("misspelt path knob", SCHEMA + "tiers:\n  synthetic: {model/widht: [2, 4]}\n",
     "widht", "tiers.synthetic.model/widht: knob 'model/widht' is not a key of base: did you "
     "mean 'model/width'?"),
    ("path knob of the wrong type", SCHEMA + "tiers:\n  s:\n    sweep: {model/width: [2.5]}"
     "\n    base: {model/width: 8}\n", "2.5", "tiers.s.sweep.model/width[0]: expected an int "
     "(like base.model.width, 8), got 2.5"),
    ("knob of the wrong type", SCHEMA + "tiers:\n  synthetic: {noise: [0.5, high]}\n",
     "high", "tiers.synthetic.noise[1]: expected a number (like base.noise, 0.5), got 'high'"),
    ("knob not a list", SCHEMA + "tiers:\n  synthetic: {noise: 0.5}\n", "noise: 0.5}",
     "tiers.synthetic.noise: expected a list, got 0.5; a knob takes a list of values; for one "
     "value write [0.5]"),
    ("sweep without base", SCHEMA + "tiers:\n  s:\n    sweep: {noise: [1.0]}\n", "  s:",
     "tiers.s: a sweep needs `base: {knob: value, ...}`, the setting every knob is varied "
     "around"),
    ("tier config of the wrong type", SCHEMA + "tier_config:\n  real: {lr: fast}\n", "fast",
     "tier_config.real.lr: expected a number (like base.lr, 0.01), got 'fast'"),
    ("duplicate key", SCHEMA + "  narrow: {model: {width: 3}}\n", "width: 3",
     "variants.narrow: duplicate key (also on line 6); YAML keeps only the last one, so remove "
     "or rename one"),
    ("float read as text", SCHEMA.replace("lr: 0.01", "lr: 1e-3"), "1e-3",
     "base.lr: 1e-3 is read as text, not a number (YAML 1.1 floats need a dot and a signed "
     "exponent): write 1.0e-3, or quote it if you mean text"),
    ("claim naming an unknown variant", SCHEMA + "expect:\n  - {claim: narrow > wide, "
     "metric: acc}\n", "narrow > wide", "expect[0]: hypothesis 'narrow > wide' names unknown "
     "variant 'wide'; the study has narrow"),
    ("claim without a metric", SCHEMA + "  wide: {}\nexpect:\n  - wide > narrow\n",
     "wide > narrow", "expect[0]: no metric: give this claim `metric:`, or the study a "
     "default `metric:` at the top level"),
    ("Study's own check", SCHEMA + "  wide: {}\nmetric: acc\nexpect:\n  - {claim: wide >= "
     "narrow}\n", "wide >= narrow", "expect[0]: hypothesis 'wide >= narrow': '>=' is "
     "non-inferiority within a margin"),
    ("claims not a list", SCHEMA + "expect: {claim: a > b}\n", "expect:",
     "expect: expected a list, got {claim: a > b}; write `expect:` as a list, one claim a "
     "line"),
    ("seeds", SCHEMA + "seeds: [0, one]\n", "seeds:", "seeds[1]: expected an int, got 'one'"),
    ("tables", SCHEMA + "tables: acc\n", "tables:", "tables: expected a list of metric groups "
     "or a mapping of group -> [columns], got 'acc'"),
    ("no variants", "seeds: 3\n", "seeds:", "(top level): no `variants:`; a study needs at "
     "least one variant"),
]


@pytest.mark.parametrize(("text", "marker", "message"), [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_errors_name_the_file_line_key_path_and_fix(tmp_path: Path, text: str, marker: str,
                                                    message: str):
    path = write(tmp_path, text)
    with pytest.raises(StudyError) as excinfo:
        load_study(path)
    expected = f"{path}:{line_of(path, marker)}: {message}"
    assert str(excinfo.value).startswith(expected), str(excinfo.value)


def test_not_valid_yaml_names_the_line(tmp_path: Path):
    path = write(tmp_path, "variants:\n  a: {}\n  b: {x: [1, 2}\n")
    with pytest.raises(StudyError, match=rf"^{path}:3: not valid YAML: "):
        load_study(path)


def test_an_empty_file_and_a_missing_file_say_what_to_do(tmp_path: Path):
    with pytest.raises(StudyError, match="the file is empty; a study needs at least `variants"):
        load_study(write(tmp_path, "# nothing yet\n"))
    with pytest.raises(StudyError, match="cannot read the study file: No such file"):
        load_study(tmp_path / "missing.yaml")


def test_only_safe_yaml_is_read(tmp_path: Path):
    path = write(tmp_path, "variants: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_study(path)


# -- sessions run from YAML --------------------------------------------------------------------

YAML_STUDY = """\
seeds: 4
metric: acc
base: {gain: 0.0}
variants:
  base: {}
  better: {gain: 0.2}
expect:
  - {claim: better > base, margin: 0.1}
"""

MODULE = """\
import random
from pathlib import Path

from harness.core.yamlspec import load_study

study = load_study("study.yaml")


@study
def test_model(run):
    Path("calls.txt").open("a").write(f"{run.variant}-{run.seed}\\n")
    noise = random.Random(f"{run.seed}-{run.variant}").gauss(0, 0.01)
    return {"acc": 0.5 + run.config["gain"] + random.Random(run.seed).gauss(0, 0.05) + noise}
"""


def runs(pytester: pytest.Pytester) -> list[dict]:
    """The runs of the latest session, as stored."""
    db = sqlite3.connect(pytester.path / ".ablation" / "results.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(
            "SELECT * FROM runs WHERE session = (SELECT session FROM runs ORDER BY id DESC "
            "LIMIT 1) ORDER BY id")]
    finally:
        db.close()


def calls(pytester: pytest.Pytester) -> list[str]:
    return (pytester.path / "calls.txt").read_text().split()


def test_a_yaml_study_runs_end_to_end_and_a_yaml_edit_retrains_only_what_changed(
        pytester: pytest.Pytester):
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    (pytester.path / "study.yaml").write_text(YAML_STUDY)
    pytester.makepyfile(test_m=MODULE)
    pytester.runpytest_subprocess().assert_outcomes(passed=8 + 1)
    assert len(calls(pytester)) == 8
    stored = runs(pytester)
    assert {r["study"] for r in stored} == {"test_m.py::test_model"}
    assert not any("study.yaml" in label for r in stored for label in json.loads(r["inputs"])), \
        "a YAML that declares a study is a declaration, not a run input"

    # one variant's config changes, a claim is added (true) and another (false): under
    # --reuse only that variant retrains, and the false claim fails at its YAML line
    edited = YAML_STUDY.replace("gain: 0.2", "gain: 0.3") + \
        "  - {claim: better >= base, margin: 0.05, name: not_worse}\n" \
        "  - {claim: base > better, name: planted_false}\n"
    (pytester.path / "study.yaml").write_text(edited)
    result = pytester.runpytest_subprocess("--reuse", "-rf")
    result.assert_outcomes(passed=8 + 2, failed=1)
    assert sorted(calls(pytester)[8:]) == [f"better-{s}" for s in range(4)]
    notes = {f"{r['variant']}-{r['seed']}": r["note"] for r in runs(pytester)}
    assert notes["better-0"].startswith("config key gain changed (0.2 -> 0.3)"), notes
    assert notes["base-0"] is None, notes
    result.stdout.fnmatch_lines(["*planted_false*CONTRADICTED*"])


def test_a_claim_item_is_located_at_its_yaml_line(pytester: pytest.Pytester):
    (pytester.path / "study.yaml").write_text(YAML_STUDY)
    pytester.makepyfile(test_m=MODULE)
    items, _ = pytester.inline_genitems("-p", "no:cacheprovider")
    claim = next(item for item in items if "better>base" in item.name)
    assert claim.location[0].endswith("study.yaml")
    assert claim.location[1] + 1 == YAML_STUDY.splitlines().index(
        "  - {claim: better > base, margin: 0.1}") + 1


def test_a_yaml_study_never_applied_to_a_function_is_a_collection_error(
        pytester: pytest.Pytester):
    (pytester.path / "study.yaml").write_text(YAML_STUDY)
    pytester.makepyfile(test_m="from harness.core.yamlspec import load_study\n"
                               "study = load_study('study.yaml')\n\n\n"
                               "def test_other():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*never decorates a test function*"])
