"""Calibration of harness.core.stats by simulation; writes the tables into docs/statistics.md.

Two parts, each deciding many simulated studies with `decide` (alpha 0.05, no correction):

* normal differences: d ~ N(mean, 1), so effects and margins are in units of the SD of d. At
  the null boundary the supported rate is the false-support rate (should be <= alpha); with the
  truth 2 SD inside the claim it is the power.
* ties: A/A pairs whose metric is continuous, saturated (clipped at 1.0) or quantised (rounded
  to 0.01), a saturated or quantised non-inferiority claim that is false or on its boundary,
  and a study that ignores its seeds. Every row is a false-support rate, with its 95%
  Clopper-Pearson interval, next to the plain paired t-test (scipy, no tie treatment).

benchmarks/calibrate_plugin.py measures the same metric kinds through the pytest plugin.

    python benchmarks/calibrate_stats.py [--studies 5000]
"""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy
from scipy import optimize
from scipy import stats as st

from harness.core.stats import decide

DOC = Path(__file__).resolve().parents[1] / "docs" / "statistics.md"
BEGIN, END = "<!-- calibration:begin -->", "<!-- calibration:end -->"
ALPHA = 0.05
# op, margin, true mean of d at the null boundary, true mean 2 SD inside the claim
CLAIMS = [(">", 0.0, 0.0, 2.0), (">=", 0.5, -0.5, 1.5), ("==", 2.0, 2.0, 0.0)]
SEEDS = (3, 5, 10)
TESTS = ("t", "permutation")


@dataclass(frozen=True)
class Kind:
    """A metric: mean + shared * z_seed + own * z_variant, clipped at 1.0 or rounded.

    z_seed is shared by both variants of a seed (the pairing), z_variant is each run's own.
    """

    label: str
    mean: float
    shared: float
    own: float
    ceiling: bool = False  # clipped at 1.0: many exact ties there
    decimals: int | None = None  # rounded to this many decimals: ties frequent

    def values(self, z_seed: np.ndarray, z_own: np.ndarray, shift: float = 0.0) -> np.ndarray:
        x = self.mean + self.shared * z_seed + self.own * z_own - shift
        x = np.minimum(x, 1.0) if self.ceiling else x
        return x if self.decimals is None else np.round(x, self.decimals)

    def source(self, shift: str = "0.0") -> str:
        """The same metric as a Python expression of `shared`, `own` and `shift`, for toys."""
        x = f"{self.mean!r} + {self.shared!r} * shared + {self.own!r} * own - {shift}"
        x = f"min({x}, 1.0)" if self.ceiling else x
        return x if self.decimals is None else f"round({x}, {self.decimals})"

    def shift_for(self, true_diff: float) -> float:
        """The shift of a's latent metric that makes the true mean of a - b equal true_diff.

        Exact for a clipped metric (E[min(1, X)] has a closed form); for a rounded one it is
        -true_diff, as rounding a smooth distribution to a fine grid leaves its mean.
        """
        if not self.ceiling:
            return -true_diff
        sd = math.hypot(self.shared, self.own)

        def clipped(mu: float) -> float:
            z = (mu - 1) / sd
            return mu - ((mu - 1) * st.norm.cdf(z) + sd * st.norm.pdf(z))
        return optimize.brentq(
            lambda x: clipped(self.mean - x) - clipped(self.mean) - true_diff, 0, 1)


CONTINUOUS = Kind("continuous", 0.8, 0.05, 0.01)
SATURATED = Kind("saturated (half of the runs at 1.0)", 1.0, 0.02, 0.01, ceiling=True)
QUANTISED = Kind("quantised (0.01 steps)", 0.8, 0.05, 0.007, decimals=2)
HEAVY = Kind("saturated (90% of b's runs at 1.0)", 1.05, 0.03, 0.02, ceiling=True)
KINDS = (CONTINUOUS, SATURATED, QUANTISED)


@dataclass(frozen=True)
class Case:
    """One row of the ties table: a claim on studies of one metric kind."""

    kind: Kind
    op: str
    margin: float = 0.0
    true_diff: float = 0.0  # the true mean of a - b
    seeds_used: bool = True

    @property
    def claim(self) -> str:
        return f"a {self.op} b" + (f", margin {self.margin:g}" if self.margin else "")

    @property
    def name(self) -> str:
        if not self.seeds_used:
            return "seeds ignored (A/A)"
        if self.true_diff:
            return f"{self.kind.label}, true a - b = {self.true_diff:g}"
        return f"{self.kind.label}, A/A"


def cases() -> list[Case]:
    """A/A pairs of every kind for both one-sided claims, then the non-inferiority examples."""
    out = [Case(kind, op) for kind in KINDS for op in (">", "<")]
    out += [Case(HEAVY, ">=", 0.005, -0.01), Case(HEAVY, ">=", 0.005, -0.005),
            Case(SATURATED, ">=", 0.005, -0.01), Case(QUANTISED, ">=", 0.005, -0.005)]
    return [*out, Case(CONTINUOUS, ">", seeds_used=False)]


def simulate_case(case: Case, n: int, studies: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Metric values of a and b, one row per study; seeds ignored repeat one draw."""
    shape = (studies, 1 if not case.seeds_used else n)
    z_seed = rng.standard_normal(shape)
    a = case.kind.values(z_seed, rng.standard_normal(shape), case.kind.shift_for(case.true_diff))
    b = case.kind.values(z_seed, rng.standard_normal(shape))
    return np.broadcast_to(a, (studies, n)), np.broadcast_to(b, (studies, n))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a rate k / n."""
    tail = (1 - level) / 2
    lo = st.beta.ppf(tail, k, n - k + 1) if k > 0 else 0.0
    hi = st.beta.ppf(1 - tail, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


def judge(k: int, n: int) -> str:
    """Where alpha lies against the 95% interval of the rate k / n."""
    lo, hi = clopper_pearson(k, n)
    if hi < ALPHA:
        return "above"
    return "in" if lo <= ALPHA else "**below: the rate exceeds alpha**"


def rate_cells(k: int, n: int) -> str:
    lo, hi = clopper_pearson(k, n)
    return f"{k / n:.4f} | [{lo:.4f}, {hi:.4f}] | {judge(k, n)}"


def plain_t(a: np.ndarray, b: np.ndarray, op: str, margin: float) -> int:
    """Studies the plain paired t-test (scipy) supports the claim in, where d varies.

    Equal differences are left undecided, as `decide` does, so this isolates the tie treatment.
    """
    shift, side = {">": (margin, "greater"), "<": (-margin, "less"),
                   ">=": (-margin, "greater")}[op]
    d = a - b
    with warnings.catch_warnings():  # scipy warns of nearly identical data: that's the point
        warnings.simplefilter("ignore", RuntimeWarning)
        p = st.ttest_1samp(d - shift, 0.0, axis=1, alternative=side).pvalue
    varies = np.ptp(d, axis=1) > 1e-12
    return int(np.count_nonzero((p < ALPHA) & varies))


def normal_table(studies: int, seed: int) -> str:
    rows = ["| test | n | claim | margin | true mean d | case | supported | contradicted "
            "| inconclusive |", "|---|---|---|---|---|---|---|---|---|"]
    cells = [(test, n, claim) for test in TESTS for n in SEEDS for claim in CLAIMS]
    for cell, (test, n, (op, margin, null, effect)) in enumerate(cells):
        for k, (case, mean) in enumerate([("null boundary", null), ("2 SD effect", effect)]):
            # independent data for every row, reproducible from --seed
            rng = np.random.default_rng([seed, cell, k])
            b = rng.normal(0.7, 0.05, (studies, n))
            a = b + rng.normal(mean, 1.0, (studies, n))
            statuses = [decide(x, y, op, margin=margin, alpha=ALPHA, test=test).status
                        for x, y in zip(a, b, strict=True)]
            r = {s: statuses.count(s) / studies
                 for s in ("supported", "contradicted", "inconclusive")}
            rows.append(f"| {test} | {n} | a {op} b | {margin:g} | {mean:g} | {case} | "
                        f"{r['supported']:.3f} | {r['contradicted']:.3f} | "
                        f"{r['inconclusive']:.3f} |")
    return "\n".join(rows)


def ties_table(studies: int, seed: int) -> str:
    rows = ["| metric | claim | seeds | test | supported | 95% interval | alpha vs interval "
            "| plain t-test |", "|---|---|---|---|---|---|---|---|"]
    for i, case in enumerate(cases()):
        for n in SEEDS if case.seeds_used else (5,):
            rng = np.random.default_rng([seed, 100 + i, n])
            a, b = simulate_case(case, n, studies, rng)
            plain = rate_cells(plain_t(a, b, case.op, case.margin), studies)
            for test in TESTS:
                k = sum(decide(x, y, case.op, margin=case.margin, alpha=ALPHA,
                               test=test).status == "supported"
                        for x, y in zip(a, b, strict=True))
                rows.append(f"| {case.name} | {case.claim} | {n} | {test} | "
                            f"{rate_cells(int(k), studies)} | "
                            f"{plain if test == 't' else ''} |")
    return "\n".join(rows)


def machine() -> str:
    """`uname -a`, nproc and the versions that produced a section."""
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return (f"Machine: `{uname}`, nproc {nproc}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, scipy {scipy.__version__}.")


def check_markers(doc: Path, begin: str, end: str) -> str:
    """The text of `doc`, which must hold the markers (checked before a long simulation)."""
    text = doc.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} lacks the {begin} ... {end} markers")
    return text


def write_marked(doc: Path, begin: str, end: str, body: str) -> str:
    """Replace the text between the markers `begin` and `end` of `doc`; returns the section."""
    text = check_markers(doc, begin, end)
    section = f"{begin}\n{body.strip()}\n{end}"
    head, rest = text.split(begin, 1)
    doc.write_text(head + section + rest.split(end, 1)[1])
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=5000, help="simulated studies per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args()
    check_markers(args.doc, BEGIN, END)

    start = time.perf_counter()
    normal = normal_table(args.studies, args.seed)
    ties = ties_table(args.studies, args.seed)
    elapsed = time.perf_counter() - start
    se = (ALPHA * (1 - ALPHA) / args.studies) ** 0.5
    body = "\n".join([
        f"Generated by `python benchmarks/calibrate_stats.py --studies {args.studies} "
        f"--seed {args.seed}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in "
        f"{elapsed:.0f} s.",
        machine(),
        "",
        f"**Normal differences.** {args.studies} simulated studies per row, d ~ N(true mean, 1), "
        f"alpha {ALPHA}, no multiplicity correction. Binomial SE of a rate near {ALPHA}: "
        f"{se:.4f}.",
        "",
        normal,
        "",
        f"**Ties.** {args.studies} simulated studies per row; every rate is a false-support "
        f"rate (the claim is false or on its boundary), with its 95% Clopper-Pearson interval "
        f"and where alpha {ALPHA} lies against it (*above* or *in* is calibrated). *plain "
        f"t-test* is scipy's paired t-test on the same data without the tie treatment (equal "
        f"differences left undecided, as decide does). Metrics (`shift` moves a's latent "
        f"value to give the true difference): "
        + "; ".join(f"{k.label}: {k.source('shift')} with shared, own ~ N(0, 1)"
                    for k in (*KINDS, HEAVY)) + ".",
        "",
        ties,
    ])
    print(write_marked(args.doc, BEGIN, END, body))


if __name__ == "__main__":
    main()
