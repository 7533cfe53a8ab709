"""Stages: results runs share, computed once per session across real xdist workers, stored
without pickle, reused by --reuse, resumed after a crash, and their time shown once."""

from __future__ import annotations

import collections
import json
import math
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.core.stages import StageError, depends_on, load, save

SWEEP = """
import os, time
import numpy as np
from harness import ablation

study = ablation(variants={"small": {"width": 4}, "big": {"width": 16}}, seeds=3,
                 tiers={"synthetic": {"temperature": [0.5, 0.7, 1.0, 1.2]}})

def train(config, seed):
    with open(os.environ["TRAININGS"], "a") as f:
        f.write(f"w{config['width']}-seed{seed}\\n")
    time.sleep(float(os.environ.get("TRAIN_S", "0")))
    return {"w": np.random.default_rng(seed).normal(size=config["width"]), "bias": 0.5}

@study
def test_sweep(run):
    state = run.stage("train", lambda: train(run.config, run.seed), ignore=["temperature"])
    return {"score": 0.1 * float(np.tanh(state["w"].sum() / run.knobs["temperature"]))
                     + state["bias"] * run.config["width"] / 4}

study.expect("big > small", metric="score")
"""

GRID = """
import os
import numpy as np
from harness import ablation

study = ablation(variants={"knn": {"clf": "knn"}, "mean": {"clf": "mean"},
                           "linear": {"clf": "linear"}}, seeds=2,
                 tiers={"synthetic": {"embedder": ["bow", "hash", "char"]}})

def embed(name, seed):
    with open(os.environ["TRAININGS"], "a") as f:
        f.write(f"{name}-seed{seed}\\n")
    return np.random.default_rng([seed, len(name)]).normal(size=(20, 3))

@study
def test_grid(run):
    x = run.stage("embed", lambda: embed(run.config["embedder"], run.seed), only=["embedder"])
    return {"acc": float(abs(x.mean())) + {"knn": 0.1, "mean": 0.2, "linear": 0.3}[run.variant]}
"""


def counted(path: Path) -> collections.Counter:
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def rows(pytester: pytest.Pytester, kind: str) -> list[dict]:
    db = sqlite3.connect(pytester.path / ".ablation" / "results.sqlite")
    db.row_factory = sqlite3.Row
    found = [dict(r) for r in db.execute("SELECT * FROM runs WHERE kind = ? ORDER BY id", (kind,))]
    db.close()
    return found


@pytest.fixture
def trainings(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = pytester.path / "trainings.txt"
    monkeypatch.setenv("TRAININGS", str(path))
    return path


def test_an_eval_only_knob_trains_variants_x_seeds_times_under_xdist(
        pytester: pytest.Pytester, trainings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAIN_S", "0.3")
    pytester.makepyfile(test_sweep=SWEEP)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-p",
                                           "no:randomly")
    result.assert_outcomes(passed=2 * 3 * 4 + 4)
    counts = counted(trainings)
    assert sorted(counts) == [f"w{w}-seed{s}" for w in (16, 4) for s in range(3)]
    assert set(counts.values()) == {1}, counts  # 6 trainings, not 24
    stages, runs = rows(pytester, "stage"), rows(pytester, "run")
    assert len(stages) == 6 and {s["status"] for s in stages} == {"done"}
    # the training time is the stages', once; a run's own time is its evaluation
    assert all(s["duration"] >= 0.3 for s in stages)
    assert all(r["duration"] < 0.25 for r in runs), [r["duration"] for r in runs]
    used = [json.loads(r["stages"]) for r in runs]
    assert all(len(u) == 1 and u[0]["name"] == "train" for u in used)
    assert sum(u[0]["computed"] for u in used) == 6  # the six runs that trained
    by_row = collections.Counter(u[0]["row"] for u in used)
    assert sorted(by_row.values()) == [4] * 6  # each stage serves its four temperatures
    assert all(json.loads(r["resources"])["peak_rss_mb"] > 0 for r in runs + stages)


def test_a_shared_stage_is_computed_once_per_dependency_and_seed_under_xdist(
        pytester: pytest.Pytester, trainings: Path) -> None:
    pytester.makepyfile(test_grid=GRID)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3 * 3 * 2)
    counts = counted(trainings)
    assert len(counts) == 3 * 2 and set(counts.values()) == {1}, counts
    assert {json.loads(s["config"])["embedder"] for s in rows(pytester, "stage")} == \
        {"bow", "hash", "char"}


def test_reuse_takes_a_stored_stage_for_new_runs_and_recomputes_a_changed_or_lost_one(
        pytester: pytest.Pytester, trainings: Path) -> None:
    pytester.makepyfile(test_sweep=SWEEP)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=28)
    assert sum(counted(trainings).values()) == 6
    # a new temperature: its runs are computed, the training stages come from the store
    pytester.makepyfile(test_sweep=SWEEP.replace("1.0, 1.2]", "1.0, 1.2, 1.5]"))
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reuse").assert_outcomes(
        passed=35)
    assert sum(counted(trainings).values()) == 6
    latest = rows(pytester, "stage")[-6:]
    assert {s["source"] for s in latest} == {"store"}
    # a lost value is computed again, and says why
    lost = pytester.path / ".ablation" / latest[0]["artifact"]
    shutil.rmtree(lost)
    pytester.makepyfile(test_sweep=SWEEP.replace("1.0, 1.2]", "1.0, 1.2, 1.5, 2.0]"))
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reuse").assert_outcomes(
        passed=42)
    assert sum(counted(trainings).values()) == 7
    notes = [s["note"] for s in rows(pytester, "stage")[-6:] if s["source"] == "run"]
    assert len(notes) == 1 and "its stored value is gone" in notes[0]
    # changed training code: every stage is computed again
    pytester.makepyfile(test_sweep=SWEEP.replace('"bias": 0.5', '"bias": 0.25'))
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reuse").assert_outcomes(
        passed=28)
    assert sum(counted(trainings).values()) == 13


CRASH = """
import os, json
from harness import ablation

study = ablation(variants={"a": {}}, seeds=1)

def train(checkpoint):
    step = json.loads(checkpoint.read_text())["step"] if checkpoint.exists() else 0
    while step < 10:
        with open(os.environ["TRAININGS"], "a") as f:
            f.write(f"step{step}\\n")
        if step == int(os.environ.get("CRASH_AT", "-1")):
            os._exit(3)  # the process dies mid-stage
        step += 1
        checkpoint.write_text(json.dumps({"step": step}))
    return {"steps": step}

@study
def test_crash(run):
    return {"steps": float(run.stage("train", train)["steps"])}
"""


def test_a_stage_killed_midway_resumes_from_its_checkpoint_in_the_next_session(
        pytester: pytest.Pytester, trainings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_crash=CRASH)
    monkeypatch.setenv("CRASH_AT", "6")
    assert pytester.runpytest_subprocess("-p", "no:cacheprovider").ret == 3
    monkeypatch.delenv("CRASH_AT")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    steps = trainings.read_text().split()
    assert steps == [f"step{i}" for i in range(7)] + [f"step{i}" for i in range(6, 10)]
    assert [json.loads(r["metrics"]) for r in rows(pytester, "run")][-1] == {"steps": 10.0}


def test_values_round_trip_without_pickle(tmp_path: Path) -> None:
    value = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "t": torch.ones(2, 2),
             "bf": torch.zeros(3, dtype=torch.bfloat16), "pair": (1, "x"), "nan": math.nan,
             "nested": [{"__tuple__": 1}, None, True], "n": np.int64(7)}
    save(value, tmp_path / "v", stage="s")
    back = load(tmp_path / "v")
    assert back["w"].dtype == np.float32 and back["w"].tolist() == value["w"].tolist()
    assert torch.equal(back["t"], value["t"]) and back["bf"].dtype == torch.bfloat16
    assert back["pair"] == (1, "x") and math.isnan(back["nan"])
    assert back["nested"] == [{"__tuple__": 1}, None, True] and back["n"] == 7
    assert "pickle" not in (tmp_path / "v" / "value.json").read_text()


def test_a_value_that_needs_pickle_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"value\['model'\] is a Linear.*state_dict"):
        save({"model": torch.nn.Linear(2, 2)}, tmp_path / "v", stage="train")
    with pytest.raises(StageError, match="Python objects"):
        save(np.array([object()]), tmp_path / "w", stage="train")
    assert not (tmp_path / "v").exists()


def test_dependencies_name_config_keys_and_a_typo_is_an_error() -> None:
    config = {"model": {"width": 4, "depth": 2}, "temperature": 0.7, "lr": 0.1}
    assert depends_on(config, only=["model/width"]) == {"model": {"width": 4}}
    assert depends_on(config, ignore=["temperature", "model/depth"]) == \
        {"model": {"width": 4}, "lr": 0.1}
    with pytest.raises(StageError, match="'temprature', which the run's config does not have"):
        depends_on(config, ignore=["temprature"])
    with pytest.raises(StageError, match="not both"):
        depends_on(config, only=["lr"], ignore=["temperature"])


CUSTOM = """
from pathlib import Path
from harness import ablation

study = ablation(variants={"a": {}}, seeds=2)

class Vocab:
    def __init__(self, words):
        self.words = words

@study
def test_custom(run):
    vocab = run.stage("vocab", lambda: Vocab(["x", "y"]), per_seed=False,
                      save=lambda v, folder: (folder / "words.txt").write_text("\\n".join(v.words)),
                      load=lambda folder: Vocab((folder / "words.txt").read_text().split()))
    return {"size": float(len(vocab.words))}
"""


def test_custom_save_and_load_and_a_seed_independent_stage(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_custom=CUSTOM)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    stages = rows(pytester, "stage")
    assert len(stages) == 1 and stages[0]["seed"] == -1  # one vocabulary for both seeds


def test_an_unstorable_value_fails_the_run_with_the_fix(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad="""
from harness import ablation
study = ablation(variants={"a": {}}, seeds=1)
class Vocab:
    pass
@study
def test_bad(run):
    run.stage("vocab", Vocab)
    return {"x": 1.0}
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stage 'vocab': value is a Vocab, which cannot be stored "
                                 "without pickle*save=(value, folder)*"])


INIT = """
import torch
from harness import ablation

study = ablation(variants={"frozen": {"train": False}, "tuned": {"train": True},
                           "reseeded": {"train": True, "shift": 1}}, seeds=2)

@study
def test_init(run):
    if run.config.get("shift"):  # the broken rule: a variant that draws its own init
        torch.manual_seed(run.seed + 1)
        model = run.note_init(torch.nn.Linear(3, 2))
    else:
        model = run.init_model(lambda: torch.nn.Linear(3, 2))
    model.weight.requires_grad_(run.config["train"])  # freezing is no new init
    return {"w": float(model.weight.sum())}
"""


def test_variants_that_did_not_start_from_the_same_init_are_reported(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_init=INIT)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*! seeds 0,1: not the same initial model: reseeded differs "
                                 "from frozen: bias, weight*"])
    assert "tuned differs" not in result.stdout.str()
    inits = [json.loads(r["init"]) for r in rows(pytester, "run")]
    assert all(set(init) == {"weight", "bias"} for init in inits)
