"""Adaptive seed budgets measured: which sequential procedure, and what it costs and saves.

Three parts, each writing its section:

* `simulate` (docs/statistics.md): studies whose paired differences are N(effect, 1), one
  claim `a > b` at alpha 0.05, over look schedules within 3-20 seeds. Every procedure looks at
  the schedule's seed counts and stops once the claim is supported or contradicted:
  the group-sequential t-test of harness/core/sequential.py with three boundary shapes
  (Wang-Tsiatis Delta 0: O'Brien-Fleming-like, 0.25, 0.5: Pocock-like), an always-valid
  e-value (the t-test's Bayes factor with a normal prior on the effect size, a test martingale
  under the scale-invariant null), the naive rule "test at alpha at every look, stop when
  p < alpha", and the fixed design at the schedule's maximum.
* `plugin` (docs/statistics.md): toy studies with an adaptive budget run by real pytest
  sessions (benchmarks/calibrate_plugin.py's helpers): A/A false support and seeds used, and
  power and seeds used at a planted effect, read back from the results store.
* `flagship` (docs/benchmarks.md): the flagship chord study's synthetic tier (a copy of
  ablation_tests with only `seeds=` changed) over several base seeds: seeds used per setting
  and verdicts, against the fixed design.

    python benchmarks/calibrate_adaptive.py simulate [--studies 4000]
    python benchmarks/calibrate_adaptive.py plugin [--settings 1000]
    python benchmarks/calibrate_adaptive.py flagship [--offsets 5]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from calibrate_plugin import WORKDIR, session_verdicts
from calibrate_stats import (
    ALPHA,
    DOC,
    KINDS,
    check_markers,
    judge,
    machine,
    rate_cells,
    write_marked,
)
from docs_section import stamp, write_section
from scipy import special

from harness.core import sequential
from harness.core.study import DEFAULT_TIER, Budget, Study
from harness.core.verdicts import stopping_look

ROOT = Path(__file__).resolve().parents[1]
SIM = ("<!-- adaptive-calibration:begin -->", "<!-- adaptive-calibration:end -->")
PLUGIN = ("<!-- adaptive-plugin-calibration:begin -->", "<!-- adaptive-plugin-calibration:end -->")
SCHEDULES = (Budget(3, 9, 2), Budget(3, 12, 3), Budget(5, 20, 5), Budget(3, 20, 1))
EFFECTS = (0.0, 1.0, 2.0, 4.0)  # true mean of d in SDs of d; 4 SD: a clear-cut claim
SHAPES = (0.0, 0.25, 0.5)
PRIOR = 1.0  # SD of the e-value's normal prior on the effect size (mean / SD of d)


def t_pvalues(d: np.ndarray, looks: tuple[int, ...]) -> np.ndarray:
    """One-sided p-values of `a > b` (H0: mean <= 0) at every look (studies x looks)."""
    n = np.asarray(looks, dtype=float)
    prefix = [d[:, :m] for m in looks]
    mean = np.stack([x.mean(axis=1) for x in prefix], axis=1)
    sd = np.stack([x.std(axis=1, ddof=1) for x in prefix], axis=1)
    return special.stdtr(n - 1, -mean / (sd / np.sqrt(n)))


def e_values(d: np.ndarray, looks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The t-test's Bayes factor with a N(0, PRIOR^2) prior on the effect size at every look
    (a test martingale under the scale-invariant null: Rouder et al. 2009; Perez-Ortiz et al.
    2022), and the sign of the mean difference."""
    n = np.asarray(looks, dtype=float)
    prefix = [d[:, :m] for m in looks]
    mean = np.stack([x.mean(axis=1) for x in prefix], axis=1)
    sd = np.stack([x.std(axis=1, ddof=1) for x in prefix], axis=1)
    t2, nu, g = (mean / (sd / np.sqrt(n))) ** 2, n - 1, PRIOR**2
    bf = (1 + n * g) ** -0.5 * ((1 + t2 / nu) / (1 + t2 / (nu * (1 + n * g)))) ** ((nu + 1) / 2)
    return bf, np.sign(mean)


def first_look(stop: np.ndarray) -> np.ndarray:
    """Index of the first look where `stop` (studies x looks) holds, else the last look."""
    return np.where(stop.any(axis=1), stop.argmax(axis=1), stop.shape[1] - 1)


def procedures(d: np.ndarray, budget: Budget) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each procedure: (supported at the end, seeds used) per study."""
    looks = budget.looks
    n = np.asarray(looks)
    p_s = t_pvalues(d, looks)
    p_c = 1 - p_s  # the contradicting test of `a > b` with margin 0: H0 mean >= 0
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out[f"fixed, {budget.max} seeds"] = (p_s[:, -1] < ALPHA, np.full(len(d), budget.max))
    naive = (p_s < ALPHA) | (p_c < ALPHA)
    end = first_look(naive)
    out["naive: stop once p < alpha"] = (p_s[np.arange(len(d)), end] < ALPHA, n[end])
    for shape in SHAPES:
        k = np.arange(1, len(looks) + 1)
        seq_s = np.stack([sequential.sequential_p(p_s[:, :j], looks, shape) for j in k], axis=1)
        seq_c = np.stack([sequential.sequential_p(p_c[:, :j], looks, shape) for j in k], axis=1)
        end = first_look((seq_s < ALPHA) | (seq_c < ALPHA))
        label = f"group-sequential t, Delta {shape:g}" + (" (chosen)" if shape == sequential.SHAPE
                                                           else "")
        out[label] = (seq_s[np.arange(len(d)), end] < ALPHA, n[end])
    bf, sign = e_values(d, looks)
    crossed = bf >= 1 / (2 * ALPHA)  # two-sided e-value; by symmetry alpha per side
    end = first_look(crossed)
    rows = np.arange(len(d))
    label = f"e-value (normal mixture, prior SD {PRIOR:g})"
    out[label] = (crossed[rows, end] & (sign[rows, end] > 0), n[end])
    return out


def kinds_table(studies: int, rng: np.random.Generator) -> list[str]:
    """A/A studies of each metric kind of calibrate_stats (continuous, saturated, quantised)
    decided through the core's own walk (`stopping_look`, `decide` at each look with its tie
    and grid rules): false support and seeds used."""
    budget = Budget(3, 12, 3)
    study = Study(variants={"a": {}, "b": {}}, seeds={"min": 3, "max": 12, "batch": 3},
                  correction="none", name="aa")
    study.expect("a > b", metric="m")
    rows = ["| metric | studies | supported | 95% interval | alpha vs interval | mean seeds | "
            "seeds vs fixed |", "|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        shared = rng.standard_normal((studies, budget.max))
        own = rng.standard_normal((studies, 2, budget.max))
        values = [kind.values(shared, own[:, i]) for i in range(2)]
        supported, seeds = 0, []
        for i in range(studies):
            def obtain(chosen, i=i, values=values):
                return {(v, s): {"m": float(values[j][i, s])} for s in chosen
                        for j, v in enumerate("ab")}
            stop = stopping_look(study, DEFAULT_TIER, study.seeds, obtain)
            supported += stop.results[0].status == "supported"
            seeds.append(budget.looks[stop.look - 1])
        rows.append(f"| {kind.label} | {studies} | {rate_cells(supported, studies)} | "
                    f"{np.mean(seeds):.2f} | {np.mean(seeds) / budget.max - 1:+.0%} |")
    return rows


def simulate(args: argparse.Namespace) -> None:
    check_markers(args.doc, *SIM)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    rows = ["| seeds min-max, batch (looks) | true effect | procedure | supported | 95% interval "
            "| alpha vs interval | mean seeds | seeds vs fixed |",
            "|---|---|---|---|---|---|---|---|"]
    checks = ["| seeds min-max, batch | A/A false support vs alpha | power lost at 1 SD | at "
              "2 SD | seeds saved at 2 SD | at 4 SD (clear-cut) |", "|---|---|---|---|---|---|"]
    for budget in SCHEDULES:
        schedule = f"{budget.min}-{budget.max}, {budget.batch} ({len(budget.looks)})"
        found: dict[tuple[float, str], tuple[float, float, str]] = {}
        for effect in EFFECTS:
            d = rng.standard_normal((args.studies, budget.max)) + effect
            for name, (supported, seeds) in procedures(d, budget).items():
                k = int(np.count_nonzero(supported))
                found[effect, "fixed" if name.startswith("fixed") else
                      name.removesuffix(" (chosen)")] = (
                    k / args.studies, seeds.mean() / budget.max - 1, judge(k, args.studies))
                rate = (rate_cells(k, args.studies) if effect == 0
                        else f"{k / args.studies:.4f} | | ")
                rows.append(f"| {schedule} | {effect:g} SD | {name} | {rate} | "
                            f"{seeds.mean():.2f} | {seeds.mean() / budget.max - 1:+.0%} |")
            print(f"{schedule}, {effect} SD done ({time.perf_counter() - start:.0f} s)",
                  flush=True)
        chosen = f"group-sequential t, Delta {sequential.SHAPE:g}"
        checks.append(
            f"| {schedule} | {found[0.0, chosen][2]} | "
            f"{100 * (found[1.0, 'fixed'][0] - found[1.0, chosen][0]):.1f} points | "
            f"{100 * (found[2.0, 'fixed'][0] - found[2.0, chosen][0]):.1f} points | "
            f"{-found[2.0, chosen][1]:.0%} | {-found[4.0, chosen][1]:.0%} |")
    kinds = kinds_table(args.kind_studies, rng)
    levels = ["| seeds min-max, batch | " + " | ".join(f"look {k}" for k in range(1, 5))
              + " | ... | last look |", "|---|---|---|---|---|---|---|"]
    for budget in SCHEDULES:
        shown = [f"{sequential.nominal_level(budget.looks, k, ALPHA):.2g} ({n} seeds)"
                 for k, n in enumerate(budget.looks, 1)]
        levels.append(f"| {budget.min}-{budget.max}, {budget.batch} | "
                      + " | ".join(shown[:4]) + f" | {'...' if len(shown) > 5 else ''} | "
                      + f"{shown[-1] if len(shown) > 4 else ''} |")
    elapsed = time.perf_counter() - start
    body = "\n".join([
        f"Generated by `python benchmarks/calibrate_adaptive.py simulate --studies "
        f"{args.studies} --kind-studies {args.kind_studies} --seed {args.seed}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"in {elapsed:.0f} s.", machine(), "",
        f"{args.studies} simulated studies per row, paired differences N(effect, 1), the claim "
        f"`a > b` at alpha {ALPHA}; every procedure stops at the first look that supports or "
        "contradicts it. At 0 SD *supported* is the false-support rate (*above* or *in*: "
        "calibrated); elsewhere it is the power. *seeds vs fixed*: mean seeds used against the "
        "fixed design's maximum.", "",
        f"The chosen procedure (Delta {sequential.SHAPE:g}) against the criteria: false support "
        "at most alpha (*in* or *above*), power at most 5 points below the fixed design's at "
        "the same maximum, at least 30% fewer seeds on clear-cut claims:", "", *checks, "",
        f"The one-sided p-value each look must reach on its own to reject at alpha {ALPHA} "
        f"(Delta {sequential.SHAPE:g}; with Holm over m claims, at alpha / m for the first):",
        "", *levels, "",
        "The metric kinds of benchmarks/calibrate_stats.py (A/A, `a > b`, seeds 3-12 by 3) "
        "decided through the core's own walk (`verdicts.stopping_look`: `decide` at each look, "
        "with its tie and grid rules, then the repeated p-value):", "", *kinds, "",
        "Every procedure:", "", *rows])
    print(write_marked(args.doc, *SIM, body))


# -- through the plugin -------------------------------------------------------------------------

def toy_study(budget: Budget, effect: float, reps: range) -> str:
    """An adaptive toy study over settings `reps`: the metric is a seed-shared draw plus each
    run's own N(0, 0.1) draw, and `effect` run-noise SDs of d more for variant a."""
    shift = effect * 0.1 * 2**0.5  # d = own_a - own_b has SD 0.1 * sqrt(2)
    return "\n".join([
        "import random", "", "from harness import ablation", "",
        "study = ablation(variants={'a': {}, 'b': {}}, correction='none',",
        f"                 seeds={{'min': {budget.min}, 'max': {budget.max}, "
        f"'batch': {budget.batch}}},",
        f"                 tiers={{'t': {{'rep': list(range({reps.start}, {reps.stop}))}}}})",
        "", "", "@study", "def test_adaptive(run):", "    rep = run.config['rep']",
        "    shared = random.Random(f'{rep}-{run.seed}').gauss(0, 1)",
        "    own = random.Random(f'{rep}-{run.seed}-{run.variant}').gauss(0, 0.1)",
        f"    return {{'acc': 0.8 + shared + own + ({shift!r} if run.variant == 'a' else 0.0)}}",
        "", "", "study.expect('a > b', metric='acc')", ""])


QUERY = "SELECT hypothesis, knobs, status, detail FROM verdicts"


def plugin(args: argparse.Namespace) -> None:
    check_markers(args.doc, *PLUGIN)
    budget = Budget(3, 12, 3)
    start, runs = time.perf_counter(), 0
    rows = ["| true effect | settings | supported | 95% interval | alpha vs interval | mean seeds "
            "| seeds vs fixed | settings stopped at look 1, 2, 3, 4 |",
            "|---|---|---|---|---|---|---|---|"]
    for effect, settings in ((0.0, args.settings), (2.0, args.settings // 2)):
        found = []
        for first in range(0, settings, args.chunk):
            reps = range(first, min(first + args.chunk, settings))
            found += session_verdicts(toy_study(budget, effect, reps), f"{effect} SD",
                                      args.workers, args.workdir, query=QUERY)
        if len(found) != settings:
            raise SystemExit(f"{effect} SD: {len(found)} verdicts for {settings} settings")
        looks = [json.loads(detail)["adaptive"] for *_, detail in found]
        seeds = np.array([look["seeds"] for look in looks])
        runs += 2 * int(seeds.sum())
        k = sum(status == "supported" for _, _, status, _ in found)
        rate = rate_cells(k, settings) if effect == 0 else f"{k / settings:.4f} | | "
        stopped = np.bincount([look["look"] for look in looks], minlength=5)[1:]
        rows.append(f"| {effect:g} SD | {settings} | {rate} | {seeds.mean():.2f} | "
                    f"{seeds.mean() / budget.max - 1:+.0%} | {', '.join(map(str, stopped))} |")
        print(rows[-1], flush=True)
    elapsed = time.perf_counter() - start
    body = "\n".join([
        f"Generated by `python benchmarks/calibrate_adaptive.py plugin --settings {args.settings} "
        f"--chunk {args.chunk} --workers {args.workers}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} min ({runs} runs "
        f"computed; the others were skipped as not needed).", machine(), "",
        "Each setting (a `rep` knob value) of the toy study below decides `a > b` (alpha 0.05, no "
        "correction) with `seeds={'min': 3, 'max': 12, 'batch': 3}`; the status and the look "
        "are read back from the store's `verdicts` (`detail.adaptive`).", "", "```python",
        toy_study(budget, 0.0, range(0, args.settings)).strip(), "```", "", *rows])
    print(write_marked(args.doc, *PLUGIN, body))


# -- the flagship -------------------------------------------------------------------------------

FLAGSHIP = "test_chord_heads.py"
STUDY = "test_chord_heads.py::test_chord_heads"
SELECT = ["-k", "synthetic and test_chord_heads and not controls", "-p", "no:cacheprovider",
          "-q", "--no-ablation-tables"]
DESIGNS = (5, Budget(3, 5, 1), Budget(3, 10, 2))  # the gate's fixed 5 seeds, then budgets


def declared(design: int | Budget) -> str:
    return (str(design) if isinstance(design, int) else
            f'{{"min": {design.min}, "max": {design.max}, "batch": {design.batch}}}')


def flagship_session(project: Path, design: int | Budget, offset: int, workers: int) -> dict:
    """The flagship's synthetic tier in a copy of ablation_tests whose `seeds=` is `design`:
    exit status, the study's runs per setting, and its verdicts (setting, status, look)."""
    source = (ROOT / "ablation_tests" / FLAGSHIP).read_text()
    changed, count = re.subn(r"^    seeds=SEEDS,$", f"    seeds={declared(design)},", source,
                             flags=re.M)
    if count != 1:
        raise SystemExit(f"{FLAGSHIP} no longer declares `seeds=SEEDS,`: update this benchmark")
    (project / FLAGSHIP).write_text(changed)
    store = project / f"store-{offset}.sqlite"
    store.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "pytest", FLAGSHIP, *SELECT, "--seed-offset",
                           str(offset), "--ablation-store", str(store), "-n", str(workers)],
                          cwd=project, capture_output=True, text=True, check=False)
    with sqlite3.connect(store) as db:
        runs: dict[float, int] = defaultdict(int)
        for (knobs,) in db.execute("SELECT knobs FROM runs WHERE kind = 'run' AND study LIKE ?",
                                   (f"%{STUDY}",)):
            runs[json.loads(knobs)["noise_sigma"]] += 1
        verdicts = [(json.loads(k)["noise_sigma"], status, json.loads(d).get("adaptive"))
                    for k, status, d in db.execute("SELECT knobs, status, detail FROM verdicts "
                                                   "WHERE study LIKE ?", (f"%{STUDY}",))]
    return {"exit": done.returncode, "runs": dict(runs), "verdicts": verdicts,
            "tail": done.stdout.strip().splitlines()[-1:]}


def flagship(args: argparse.Namespace) -> None:
    project = Path(tempfile.mkdtemp(prefix="adaptive-flagship-", dir=WORKDIR))
    start = time.perf_counter()
    rows = ["| `seeds=` | sessions green | seeds per setting: mean (range) | vs a fixed design "
            "with max seeds | claims supported | settings stopped at look 1 |",
            "|---|---|---|---|---|---|"]
    try:
        shutil.copytree(ROOT / "ablation_tests", project, dirs_exist_ok=True)
        (project / "pytest.ini").write_text("[pytest]\n")
        for design in DESIGNS:
            sessions = [flagship_session(project, design, 1000 * i, args.workers)
                        for i in range(args.offsets)]
            for s in sessions:
                print(declared(design), s["exit"], s["runs"], s["tail"], flush=True)
            seeds = [n // 3 for s in sessions for n in s["runs"].values()]  # 3 variants
            verdicts = [v for s in sessions for v in s["verdicts"]]
            stops = {(i, v[0]): v[2]["look"] for i, s in enumerate(sessions)
                     for v in s["verdicts"] if v[2]}
            most = design if isinstance(design, int) else design.max
            rows.append(
                f"| `{declared(design)}` | {sum(s['exit'] == 0 for s in sessions)}/"
                f"{args.offsets} | {np.mean(seeds):.2f} ({min(seeds)}-{max(seeds)}) | "
                f"{np.mean(seeds) / most - 1:+.0%} | "
                f"{sum(v[1] == 'supported' for v in verdicts)}/{len(verdicts)} | "
                + (f"{sum(look == 1 for look in stops.values())}/{len(stops)} |" if stops
                   else "- |"))
        elapsed = time.perf_counter() - start
    finally:
        shutil.rmtree(project)
    command = (f"python benchmarks/calibrate_adaptive.py flagship --offsets {args.offsets} "
               f"--workers {args.workers}")
    body = "\n".join([
        f"{stamp(command)}, {elapsed / 60:.1f} min.", "",
        "The flagship's synthetic tier (`pytest ablation_tests/test_chord_heads.py -k "
        "\"synthetic and test_chord_heads and not controls\" -n 2`: 2 settings, 3 variants, 4 "
        "hypotheses each under Holm, two of them identities) in a copy of ablation_tests whose "
        f"only change is `seeds=`, on {args.offsets} base seeds (`--seed-offset` 0, 1000, ...). "
        "*seeds per setting*: the study's runs per setting over its 3 variants.", "", *rows])
    print(write_section("adaptive-flagship", body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    sim = sub.add_parser("simulate")
    sim.add_argument("--studies", type=int, default=4000)
    sim.add_argument("--kind-studies", type=int, default=2000)
    sim.add_argument("--seed", type=int, default=1)
    plug = sub.add_parser("plugin")
    plug.add_argument("--settings", type=int, default=1000)
    plug.add_argument("--chunk", type=int, default=500)
    plug.add_argument("--workers", type=int, default=0)
    plug.add_argument("--workdir", type=Path, default=WORKDIR)
    flag = sub.add_parser("flagship")
    flag.add_argument("--offsets", type=int, default=5)
    flag.add_argument("--workers", type=int, default=2)
    for p in (sim, plug):
        p.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args()
    {"simulate": simulate, "plugin": plugin, "flagship": flagship}[args.part](args)


if __name__ == "__main__":
    main()
