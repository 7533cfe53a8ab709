"""Regression gating: this session's runs against a baseline session's, paired seed by seed.

A run is identified by (study, tier, knobs, variant, seed), and a seed fixes a run's init and
data, so the same run in a baseline session (say, main's last CI run) differs from this
session's only by what the change did. Each guarded metric (`Study.guard`) becomes, per variant
and setting, a non-inferiority claim `current >= baseline - margin` (`<=` and `+` for metrics
where lower is better), decided by the paired test over seeds with Holm's correction over the
setting's guards. Runs equal to the baseline's on every seed (unchanged code) pass exactly,
without a test: there is nothing to be uncertain about.

    baseline = resolve("git:main", store=Path(".ablation/results.sqlite"), repo=Path("."))
    before = baseline_runs(baseline, study.name, tier, knobs)
    results = decide_guards(study.guards, list(study.variants), current, before, seeds)
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from harness.core.store import Store, StoreError, VerdictRow
from harness.core.study import Guard, Knobs

if TYPE_CHECKING:  # the statistics (numpy, scipy) load when a guard is decided, not before
    from harness.core.stats import Verdict
    from harness.core.verdicts import RunMetrics

SPEC_HELP = ("a session id of the results store, git:REF (the newest session the store holds "
             "of that commit), or another store file (its newest session; FILE::SESSION for "
             "another)")


T = TypeVar("T")


class BaselineError(ValueError):
    """The baseline named cannot be found; the message says what was looked for and where."""


@dataclass(frozen=True)
class Baseline:
    """A session to compare with: where it is stored and how the user named it."""

    store: str
    session: str
    named: str  # what --ablation-baseline said, for messages

    def describe(self) -> str:
        named = f" ({self.named})" if self.named != self.session else ""
        return f"session {self.session} of {self.store}{named}"


def resolve(spec: str, *, store: Path, repo: Path) -> Baseline:
    """The baseline `spec` names (see SPEC_HELP); relative store files are taken from `repo`."""
    path, _, session = spec.partition("::")
    candidate = Path(path) if Path(path).is_absolute() else repo / path
    if session or candidate.is_file():
        found = session or _read(candidate, lambda s: s.latest_session())
        if found is None:
            raise BaselineError(f"--ablation-baseline {spec}: the store {candidate} holds no "
                                "session with runs")
        if session and not _read(candidate, lambda s: s.has_session(session)):
            raise BaselineError(f"--ablation-baseline {spec}: the store {candidate} has no "
                                f"session {session!r} (python -m harness report --store "
                                f"{candidate} --list shows them)")
        return Baseline(str(candidate), found, spec)
    if spec.startswith("git:"):
        commit = _commit(spec[4:], repo)
        sessions = [s for s in _read(store, lambda st: st.sessions())
                    if s["meta"].get("git_commit") == commit]
        with_runs = [s["session"] for s in sessions
                     if _read(store, lambda st, name=s["session"]: st.has_runs(name))]
        if not with_runs:
            raise BaselineError(
                f"--ablation-baseline {spec}: the store {store} holds no session made at "
                f"{spec[4:]} (commit {commit[:12]}, clean checkout): run the studies there "
                f"first, or name a session or a store file")
        return Baseline(str(store), with_runs[-1], spec)
    if not _read(store, lambda s: s.has_session(spec)):
        raise BaselineError(f"--ablation-baseline {spec}: not a file, not git:REF, and the store "
                            f"{store} has no such session; give {SPEC_HELP}")
    return Baseline(str(store), spec, spec)


def _read(path: Path, query: Callable[[Store], T]) -> T:
    """`query(store)` on the store at `path`, opened read-only; a store error names it."""
    try:
        with Store(path, readonly=True, option="--ablation-baseline") as store:
            return query(store)
    except StoreError as exc:
        raise BaselineError(f"baseline: {exc}") from None


def _commit(ref: str, repo: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=repo,
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise BaselineError(f"--ablation-baseline git:{ref}: git does not know {ref!r} in "
                            f"{repo} ({done.stderr.strip() or 'not a git checkout'})")
    return done.stdout.strip()


def baseline_runs(baseline: Baseline, study: str, tier: str, knobs: Knobs) -> RunMetrics:
    """The baseline session's runs of one setting: metrics of the finished ones, the reason
    for the others (a failed run in the baseline is no baseline)."""
    rows = _read(Path(baseline.store), lambda s: s.runs(session=baseline.session, study=study))
    return {(r.variant, r.seed): r.metrics if r.status == "done" else
            f"it {r.status} in the baseline" for r in rows
            if r.tier == tier and tuple(r.knobs.items()) == tuple(knobs)}


@dataclass(frozen=True)
class GuardResult:
    """One guard for one variant at one setting: a verdict, an error, or why it was skipped
    (no baseline run to pair with)."""

    guard: Guard
    variant: str
    verdict: Verdict | None
    error: str = ""
    skipped: str = ""

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else self.verdict.status if self.verdict else "error"

    @property
    def label(self) -> str:
        return self.guard.label(self.variant)

    def message(self) -> str:
        g = self.guard
        claim = f"{self.variant} {'<=' if g.minimize else '>='} baseline on {g.metric}"
        if self.verdict is None:
            return f"{claim}: {'skipped' if self.skipped else 'cannot be decided'}: " \
                   f"{self.skipped or self.error}"
        return self.verdict.message(self.variant, f"{self.variant}@baseline", g.metric)

    def row(self, study: str, tier: str, knobs: Knobs, baseline: Baseline) -> VerdictRow:
        """The verdict as the store (with both means), the tables and junit properties take
        it."""
        from harness.core.verdicts import paired

        g = self.guard
        return VerdictRow(study, tier, dict(knobs), self.label, "guard",
                          f"{self.variant} {'<=' if g.minimize else '>='} baseline", g.metric,
                          self.status, self.message(), margin=g.margin, alpha=g.alpha,
                          test=g.test, baseline=baseline.session, **paired(self.verdict))


def decide_guards(guards: Sequence[Guard], variants: Sequence[str], current: RunMetrics,
                  baseline: RunMetrics, seeds: Sequence[int],
                  correction: str = "holm") -> list[GuardResult]:
    """Every guard for every one of `variants` it covers, at one setting, corrected as a
    family; a variant without a baseline run for some seed is skipped with the reason."""
    from harness.core.stats import adjust, decide
    from harness.core.verdicts import seed_values

    results: list[GuardResult] = []
    decided: list[int] = []
    for guard in guards:
        for variant in guard.covers(variants):
            before = seed_values(baseline, seeds, variant, guard.metric)
            if isinstance(before, str):
                results.append(GuardResult(guard, variant, None,
                                           skipped=f"no baseline to compare with: {before}"))
                continue
            after = seed_values(current, seeds, variant, guard.metric)
            if isinstance(after, str):
                results.append(GuardResult(guard, variant, None, error=after))
                continue
            if guard.margin == 0 or after == before:  # identity: exactly the baseline's values
                verdict = decide(after, before, "==", margin=0.0, alpha=guard.alpha)
            else:  # seeds the change left alone count as they are, not as ties
                unchanged = [current.get((variant, s)) == baseline.get((variant, s))
                             for s in seeds]
                verdict = decide(after, before, "<=" if guard.minimize else ">=",
                                 margin=guard.margin, alpha=guard.alpha, test=guard.test,
                                 unchanged=unchanged)
            decided.append(len(results))
            results.append(GuardResult(guard, variant, verdict))
    corrected = adjust([results[i].verdict for i in decided], method=correction)
    for i, verdict in zip(decided, corrected, strict=True):
        results[i] = GuardResult(results[i].guard, results[i].variant, verdict)
    return results


def compare_session(store: Store, session: str, baseline: Baseline,
                    options: dict[str, dict]) -> list[dict]:
    """Verdict rows of every guard of every stored setting of `session` against `baseline`,
    from the stores alone (the guards as the session recorded them in its study options)."""
    settings: dict[tuple[str, str, Knobs], dict] = {}
    for run in store.runs(session=session):
        current = settings.setdefault((run.study, run.tier, tuple(run.knobs.items())), {})
        current[run.variant, run.seed] = (run.metrics if run.status == "done"
                                          else f"it {run.status} in this session")
    rows = []
    for (study, tier, knobs), current in settings.items():
        stored = options.get(study, {})
        guards = [Guard(**{**g, "variants": tuple(g["variants"])})
                  for g in stored.get("guards", [])]
        if not guards:
            continue
        variants = list(dict.fromkeys(variant for variant, _ in current))
        seeds = sorted({seed for _, seed in current})
        results = decide_guards(guards, variants, current,
                                baseline_runs(baseline, study, tier, knobs), seeds,
                                stored.get("correction", "holm"))
        rows += [r.row(study, tier, knobs, baseline).as_dict() for r in results]
    return rows
