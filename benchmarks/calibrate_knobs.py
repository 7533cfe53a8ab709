"""Calibration of harness.core.knobstats (trend, best) by simulation; writes docs/statistics.md.

Simulated studies of one variant at k knob levels over n seeds: a metric value is
`0.8 + 0.05 * z_seed + own * z_run + shift[level]`, with z_seed shared by the levels of a seed
(the pairing) and z_run each run's own, both N(0, 1); continuous, rounded to 0.01 with own
0.007 (quantised: ties frequent), or (trend only) with heavy-tailed z_run. Every row decides
many studies (alpha 0.05, no correction):

* trend: A/A (step 0) gives the false-support rate of "increases", which should be at most
  alpha; a planted step of half a run's noise SD per level gives the power. Next to Page's
  test, two alternatives decide the same data: the one-sample t-test of the per-seed
  least-squares slopes, and of the per-seed Spearman correlations.
* best: with no level better, or the two last levels tied far above the others, every winner
  is false (at most alpha); with the last level ahead of the others by twice a run's noise SD,
  the rate of deciding it (power). Also the candidate set's coverage of a best level, and
  `expect` naming the last level: false support, or power. Next to it, the power of the
  first design, all pairs two-sided with Holm over the k(k-1)/2 pairs.

With --plugin it calibrates through the plugin instead: toy A/A studies (and one with a
planted trend) declaring study.trend, study.best (with and without expect) and a knob
comparison run in pytest sessions of throwaway projects, and the verdicts are counted from
the store; that table goes into its own section.

    python benchmarks/calibrate_knobs.py [--studies 2000] [--seed 0]
    python benchmarks/calibrate_knobs.py --plugin [--reps 300] [--chunk 300] [--workers 0]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from calibrate_plugin import session_verdicts
from calibrate_stats import ALPHA, DOC, check_markers, rate_cells, write_marked
from docs_section import stamp
from scipy import stats as st

from harness.core.knobstats import BestVerdict, best, trend
from harness.core.stats import holm

BEGIN, END = "<!-- knob-calibration:begin -->", "<!-- knob-calibration:end -->"
SEEDS = (3, 5, 10)
LEVELS = (3, 5)


@dataclass(frozen=True)
class Kind:
    """A metric: 0.8 + 0.05 z_seed + own z_run + shift, optionally rounded; z_run is N(0, 1),
    or Student's t with `df` degrees of freedom scaled to unit SD (heavy tails)."""

    label: str
    own: float
    decimals: int | None = None
    df: int | None = None

    def values(self, rng: np.random.Generator, studies: int, k: int, n: int,
               shift: np.ndarray) -> np.ndarray:
        """(studies, k, n) metric values; shift[i] is added at level i."""
        z_run = (rng.standard_normal((studies, k, n)) if self.df is None else
                 rng.standard_t(self.df, (studies, k, n)) / math.sqrt(self.df / (self.df - 2)))
        x = 0.8 + 0.05 * rng.standard_normal((studies, 1, n)) + self.own * z_run + shift[:, None]
        return x if self.decimals is None else np.round(x, self.decimals)

    def source(self) -> str:
        x = f"0.8 + 0.05 * z_seed + {self.own!r} * z_run + shift"
        x = x if self.decimals is None else f"round({x}, {self.decimals})"
        return x + ("" if self.df is None else f", z_run ~ t({self.df} df) scaled to SD 1")


KINDS = (Kind("continuous", 0.01), Kind("quantised (0.01 steps)", 0.007, decimals=2),
         Kind("heavy-tailed", 0.01, df=3))
TREND_STEP = 0.5  # planted trend per level step, in units of a run's own noise SD
BEST_GAP = 2.0  # the best level's lead over the others, in units of a run's own noise SD
TIED_GAP = 6.0  # how far the two tied best levels lie above the others, in the same units


def reference_tests(x: np.ndarray) -> tuple[int, int]:
    """Studies supported by the one-sided t-tests of per-seed slopes and Spearman rhos."""
    k = x.shape[1]
    index = np.arange(k) - (k - 1) / 2
    slopes = np.einsum("i,sin->sn", index, x) / (index @ index)
    ranks = st.rankdata(x, axis=1)
    centred = ranks - ranks.mean(axis=1, keepdims=True)
    norm = np.sqrt((index @ index) * (centred**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.einsum("i,sin->sn", index, centred) / norm
    out = []
    with warnings.catch_warnings():  # constant samples: scipy warns and gives NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        for y in (slopes, np.nan_to_num(rho)):  # a seed without variation: rho 0
            p = st.ttest_1samp(y, 0.0, axis=1, alternative="greater").pvalue
            out.append(int(np.count_nonzero(p < ALPHA)))
    return out[0], out[1]


def trend_table(studies: int, seed: int) -> str:
    rows = ["| metric | levels | seeds | planted step | supported | 95% interval | alpha vs "
            "interval | contradicted | slope t-test | Spearman t-test |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for a, kind in enumerate(KINDS):
        for k in LEVELS:
            for n in SEEDS:
                for case, step in enumerate((0.0, TREND_STEP)):
                    rng = np.random.default_rng([seed, 1, a, k, n, case])
                    x = kind.values(rng, studies, k, n, step * kind.own * np.arange(k))
                    names = [str(i) for i in range(k)]
                    statuses = [trend(v, levels=names, alpha=ALPHA).status for v in x]
                    support = statuses.count("supported")
                    by_slope, by_rho = reference_tests(x)
                    cells = (rate_cells(support, studies) if step == 0
                             else f"{support / studies:.4f} | | ")
                    rows.append(f"| {kind.label} | {k} | {n} | {step:g} SD | {cells} | "
                                f"{statuses.count('contradicted') / studies:.4f} | "
                                f"{by_slope / studies:.4f} | {by_rho / studies:.4f} |")
    return "\n".join(rows)


def best_table(studies: int, seed: int) -> str:
    rows = ["| metric | levels | seeds | test | case | winner: the best level | winner: another "
            "level | 95% interval | alpha vs interval | candidates hold the last level "
            "| expect=last supported | 95% interval | alpha vs interval | all pairs, Holm: the "
            "best level |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a, kind in enumerate(KINDS[:2]):
        for k in LEVELS:
            for n in SEEDS:
                for test in ("t", "permutation") if n >= 5 else ("t",):
                    for case, (label, shift) in enumerate(best_cases(k)):
                        rng = np.random.default_rng([seed, 2, a, k, n, case])
                        x = kind.values(rng, studies, k, n, shift * kind.own)
                        strict = shift[-1] > shift[:-1].max()  # the last level is the best
                        top, right, wrong, held, supported, holm_right = str(k - 1), 0, 0, 0, 0, 0
                        for v in x:
                            b = best({str(i): v[i] for i in range(k)}, alpha=ALPHA, test=test,
                                     expect=top)
                            right += strict and b.winner == top
                            wrong += b.winner is not None and not (strict and b.winner == top)
                            held += top in b.candidates
                            supported += b.status == "supported"
                            holm_right += strict and holm_winner(b) == top
                        rows.append(
                            f"| {kind.label} | {k} | {n} | {test} | {label} | "
                            f"{f'{right / studies:.4f}' if strict else '-'} | "
                            f"{rate_cells(wrong, studies)} | {held / studies:.4f} | "
                            + (f"{supported / studies:.4f} | | |" if strict else
                               f"{rate_cells(supported, studies)} |")
                            + f" {f'{holm_right / studies:.4f}' if strict else '-'} |")
    return "\n".join(rows)


def holm_winner(b: BestVerdict) -> str | None:
    """The winner of the first design: two-sided p = 2 min(p_a, p_b), Holm over all pairs,
    and a winner beats every other level significantly."""
    p = np.minimum(1.0, 2 * np.array([min(q.p_a, q.p_b) for q in b.pairs]))
    wins = Counter(q.a if q.p_a < q.p_b else q.b
                   for q, adjusted in zip(b.pairs, holm(p), strict=True) if adjusted < ALPHA)
    top = [level for level, count in wins.items() if count == len(b.levels) - 1]
    return top[0] if top else None


def best_cases(k: int) -> list[tuple[str, np.ndarray]]:
    """(label, shift per level in run noise SDs): no difference, the two last levels tied far
    above the others (the least favourable case for a false winner), the last level ahead."""
    tied = np.zeros(k)
    tied[:-2] = -TIED_GAP
    ahead = np.zeros(k)
    ahead[-1] = BEST_GAP
    return [("A/A", np.zeros(k)), (f"last two tied, +{TIED_GAP:g} SD over the rest", tied),
            (f"last level +{BEST_GAP:g} SD", ahead)]


# --- through the plugin ---------------------------------------------------------------------

PLUGIN_BEGIN = "<!-- knob-plugin-calibration:begin -->"
PLUGIN_END = "<!-- knob-plugin-calibration:end -->"
WORKDIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # runs write small files
LEVEL_ORDER = [2, 0, 3, 1]  # declared out of order: the plugin must sort them numerically
# the study's claims: store label -> the column it fills
CLAIMS = {"a:increases_with(level)[m]": "trend", "a:best(level)[m]": "best",
          "a:best_is_3": "expect", "a:level=1>level=0[m]": "compare"}
LABEL = {column: label for label, column in CLAIMS.items()}


@dataclass(frozen=True)
class PluginCell:
    """One toy study: variant a, `seeds` seeds, knob level 0..3 and a `rep` knob that makes
    many independent groups; the metric rises by `step` run noise SDs per level."""

    kind: Kind
    seeds: int
    step: float = 0.0

    def module(self, reps: range) -> str:
        metric = (f"0.8 + 0.05 * shared + {self.kind.own!r} * own + "
                  f"{self.step * self.kind.own!r} * level")
        if self.kind.decimals is not None:
            metric = f"round({metric}, {self.kind.decimals})"
        return "\n".join([
            "import random",
            "",
            "from harness import ablation",
            "",
            f"study = ablation(variants={{'a': {{}}}}, seeds={self.seeds}, correction='none',",
            f"                 tiers={{'t': {{'rep': list(range({reps.start}, {reps.stop})), "
            f"'level': {LEVEL_ORDER!r}}}}})",
            "study.trend('level', metric='m', direction='increases')",
            "study.best('level', metric='m')",
            "study.best('level', metric='m', expect=3, name='best_is_3')",
            "study.expect('level=1 > level=0', metric='m')",
            "",
            "",
            "@study",
            "def test_knobs(run):",
            "    rep, level = run.config['rep'], run.config['level']",
            "    shared = random.Random(f'{rep}-{run.seed}').gauss(0, 1)  # one per seed: paired",
            "    own = random.Random(f'{rep}-{run.seed}-{level}').gauss(0, 1)",
            f"    return {{'m': {metric}}}",
            "",
        ])


def run_chunk(cell: PluginCell, reps: range, workers: int, root: Path | None) -> list[tuple]:
    """Run the cell's study over groups `reps` in a fresh project; its (label, status) rows."""
    rows = session_verdicts(cell.module(reps), str(cell), workers, root)
    found = Counter(h for h, _, _ in rows)
    if found != dict.fromkeys(CLAIMS, len(reps)) or len({(h, k) for h, k, _ in rows}) != len(rows):
        raise SystemExit(f"{cell}: expected one verdict per group and claim "
                         f"{dict.fromkeys(CLAIMS, len(reps))}, the store has {dict(found)}")
    return [(h, status) for h, _, status in rows]


def share(counts: Counter, column: str, status: str, reps: int, power: bool) -> str:
    """The cells of one claim's rate of `status`: a rate, with its interval when it is a
    false-decision rate."""
    k = counts[LABEL[column], status]
    return f"{k / reps:.4f} | |" if power else rate_cells(k, reps)


def plugin_table(reps: int, chunk: int, workers: int, root: Path | None) -> tuple[str, int, int]:
    """The table, the runs and the pytest sessions it took."""
    rows = ["| metric | seeds | planted step | groups | trend supported | 95% interval | alpha "
            "vs interval | trend contradicted | best: decided | 95% interval | alpha vs "
            "interval | best, expect=3: supported | 95% interval | alpha vs interval | "
            "level=1 > level=0 supported | 95% interval | alpha vs interval |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    cells = [PluginCell(kind, n) for kind in KINDS[:2] for n in SEEDS]
    cells.append(PluginCell(KINDS[0], 5, TREND_STEP))
    runs = sessions = 0
    for cell in cells:
        start, counts = time.perf_counter(), Counter()
        for first in range(0, reps, chunk):
            counts.update(run_chunk(cell, range(first, min(first + chunk, reps)), workers, root))
            sessions += 1
        runs += reps * len(LEVEL_ORDER) * cell.seeds
        print(f"{cell.kind.label}, {cell.seeds} seeds, step {cell.step:g}: {dict(counts)}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        power = cell.step > 0
        rows.append(f"| {cell.kind.label} | {cell.seeds} | {cell.step:g} SD | {reps} | "
                    f"{share(counts, 'trend', 'supported', reps, power)} | "
                    f"{counts[LABEL['trend'], 'contradicted'] / reps:.4f} | "
                    f"{share(counts, 'best', 'decided', reps, power)} | "
                    f"{share(counts, 'expect', 'supported', reps, power)} | "
                    f"{share(counts, 'compare', 'supported', reps, power)} |")
    return "\n".join(rows), runs, sessions


def plugin_main(args: argparse.Namespace) -> None:
    check_markers(args.doc, PLUGIN_BEGIN, PLUGIN_END)
    start = time.perf_counter()
    table, runs, sessions = plugin_table(args.reps, args.chunk, args.workers, args.workdir)
    elapsed = time.perf_counter() - start
    command = (f"python benchmarks/calibrate_knobs.py --plugin --reps {args.reps} --chunk "
               f"{args.chunk} --workers {args.workers}")
    example = PluginCell(KINDS[0], 5).module(range(0, args.reps))
    body = "\n".join([
        f"Generated by {stamp(command)}, in {elapsed / 60:.1f} min ({runs} runs in {sessions} "
        f"pytest sessions, {runs / elapsed:.0f} runs/s).",
        "",
        "Each row runs a toy study through pytest and reads the verdicts back from the store "
        "(`verdicts` table). The continuous 5-seed study:",
        "",
        "```python",
        example.strip(),
        "```",
        "",
        f"Quantised studies round the metric to 0.01 with own noise 0.007; the planted row adds "
        f"{TREND_STEP:g} run noise SDs per level. With no step every rate is a false-decision "
        f"rate (*above* or *in*: calibrated); with the step they are powers. A group is one "
        f"`rep` (its four levels, paired by seed), one item per claim; alpha {ALPHA}, no "
        f"correction. The levels are declared as {LEVEL_ORDER} and taken in numeric order.",
        "",
        table,
    ])
    print(write_marked(args.doc, PLUGIN_BEGIN, PLUGIN_END, body))



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000, help="simulated studies per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    parser.add_argument("--plugin", action="store_true",
                        help="calibrate through pytest sessions of toy studies instead")
    parser.add_argument("--reps", type=int, default=300, help="--plugin: groups per study")
    parser.add_argument("--chunk", type=int, default=300, help="--plugin: most groups a session")
    parser.add_argument("--workers", type=int, default=0, help="--plugin: pytest-xdist -n")
    parser.add_argument("--workdir", type=Path, default=WORKDIR,
                        help="--plugin: where the throwaway projects go (default /dev/shm)")
    args = parser.parse_args()
    if args.plugin:
        plugin_main(args)
        return
    check_markers(args.doc, BEGIN, END)

    start = time.perf_counter()
    trends = trend_table(args.studies, args.seed)
    bests = best_table(args.studies, args.seed)
    elapsed = time.perf_counter() - start
    command = f"python benchmarks/calibrate_knobs.py --studies {args.studies} --seed {args.seed}"
    se = math.sqrt(ALPHA * (1 - ALPHA) / args.studies)
    metrics = "; ".join(f"{kind.label}: {kind.source()}" for kind in KINDS)
    body = "\n".join([
        f"Generated by {stamp(command)}, in {elapsed:.0f} s.",
        "",
        f"{args.studies} simulated studies per row, alpha {ALPHA}, no multiplicity correction "
        f"(binomial SE of a rate near {ALPHA}: {se:.4f}). Metrics, with z_seed shared by the "
        f"levels of a seed and z_run each run's own, both N(0, 1): {metrics}; `shift` is the "
        f"planted effect at a level, in units of the run noise SD (`own`).",
        "",
        f"**Trend** (`trend(..., direction=\"increases\")`): shift = step x level index. With "
        f"step 0 (A/A) *supported* is the false-support rate, with its 95% Clopper-Pearson "
        f"interval and where alpha lies against it (*above* or *in* is calibrated); with step "
        f"{TREND_STEP:g} it is the power. *slope t-test* and *Spearman t-test* are the "
        f"supported rates of the one-sided one-sample t-tests of the per-seed least-squares "
        f"slopes and of the per-seed Spearman correlations (a seed without variation counts "
        f"rho 0) on the same data.",
        "",
        trends,
        "",
        f"**Best** (`best(..., expect=<last level>)`, maximize), continuous and quantised "
        f"metrics. Cases: A/A (no level better), the last two levels tied {TIED_GAP:g} run "
        f"noise SDs above the others (the least favourable case for a false winner: one "
        f"comparison between the two decides it), and the last level {BEST_GAP:g} SDs ahead of "
        f"all others. *winner: the best level* is the power to single out the true best; "
        f"*winner: another level* counts every winner that is not strictly the best (all "
        f"winners in the first two cases), a false-decision rate to hold at alpha; *candidates "
        f"hold the last level* is the coverage of a best level by the candidate set (at least "
        f"1 - alpha); *expect=last supported* is the false-support rate where the last level "
        f"is not strictly best, else the power. *all pairs, Holm* is the power of the first "
        f"design on the same data: every pair two-sided, Holm over all k(k-1)/2 pairs, the "
        f"winner the level significantly better than every other.",
        "",
        bests,
    ])
    print(write_marked(args.doc, BEGIN, END, body))


if __name__ == "__main__":
    main()
