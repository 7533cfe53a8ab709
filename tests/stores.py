"""Results stores on real files, whole and broken, for the store, report and plugin tests."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.core.store import Owner, Store, VerdictRow
from tests.specs import Spec


def verdict_row(fields: Mapping[str, Any]) -> VerdictRow:
    """A VerdictRow from the fields a test names (the others at neutral values)."""
    known = {f.name for f in dataclasses.fields(VerdictRow)}
    base = {"kind": "hypothesis", "claim": "", "metric": "", "status": "supported",
            "message": ""}
    return VerdictRow(**{**base, **{k: v for k, v in fields.items() if k in known}})


def save_verdicts(store: Store, session: str, rows: list[Mapping[str, Any]]) -> None:
    store.save_verdicts(session, [verdict_row(row) for row in rows])


OWNER = Owner("host", 1, "main")
SESSION = "20260101-000000-aaaaaa"


def populated(path: Path, seeds: int = 3) -> Path:
    """A store holding one finished session: variants a and b, `seeds` seeds, a verdict."""
    with Store(path) as store:
        store.begin_session(SESSION, argv=["-k", "x"], meta={})
        store.save_study(SESSION, "heads", {"tables": None, "minimize": []})
        for variant, gain in (("a", 0.0), ("b", 0.1)):
            for seed in range(seeds):
                _, row = store.claim(SESSION, Spec(variant=variant, seed=seed), fingerprint="fp",
                                     owner=OWNER, config={})
                store.finish(row.id, metrics={"acc": 0.5 + gain + seed / 100}, failures=[],
                             duration=1.0, device="cpu", versions={}, git_commit=None)
        save_verdicts(store, SESSION, [{
            "study": "heads", "tier": "synthetic", "knobs": {"noise_sigma": 0.5},
            "hypothesis": "b>a[acc]", "metric": "acc", "status": "supported", "diff": 0.1,
            "ci_lo": 0.09, "ci_hi": 0.11, "p": 0.001, "p_adj": 0.001, "test": "t", "n": seeds,
            "message": ""}])
        store.end_session(SESSION, exitstatus=0)
    return path


def _sql(path: Path, *statements: str) -> Path:
    db = sqlite3.connect(path)
    try:
        for statement in statements:
            db.execute(statement)
        db.commit()
    finally:
        db.close()
    return path


def version_1(path: Path) -> Path:
    """A store as pytest-ablation 0.1 wrote it: schema version 1, without the columns later
    versions added (runs.inputs, .note, .kind, ...; verdicts.mean_a, ...)."""
    added = {"runs": ("inputs", "note", "kind", "resources", "stages", "init", "artifact"),
             "verdicts": ("mean_a", "mean_b", "baseline", "kind", "detail")}
    return _sql(populated(path), "DROP INDEX runs_reuse",
                *(f"ALTER TABLE {table} DROP COLUMN {column}"
                  for table, columns in added.items() for column in columns),
                "UPDATE schema_version SET version = 1")


def newer(path: Path) -> Path:
    """A store of a pytest-ablation newer than this one."""
    return _sql(populated(path), "UPDATE schema_version SET version = 99")


def foreign(path: Path) -> Path:
    """Some other program's SQLite database (rollback journal, as SQLite's default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _sql(path, "CREATE TABLE users (name TEXT)", "INSERT INTO users VALUES ('ada')")


def garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a database\n" * 400)
    return path


def truncated(path: Path) -> Path:
    """A whole store cut to its first pages, as a crash while copying it leaves it."""
    data = populated(path).read_bytes()
    path.write_bytes(data[:len(data) // 3])
    return path


BROKEN: dict[str, tuple[Callable[[Path], Path], str]] = {
    # how to make it -> what the error says is wrong (the fix follows)
    "garbage": (garbage, "is not a SQLite database (file is not a database): move it away"),
    "truncated": (truncated, "is damaged (database disk image is malformed): move it away"),
    "foreign": (foreign, "is a SQLite database but not a pytest-ablation results store "
                         "(its tables: users): leave it alone and pass"),
    "newer": (newer, "has schema version 99, but this pytest-ablation only knows version"),
}


def snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    """What must not change when a store is only read: its bytes, its mtime, its folder."""
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def modes_apply(folder: Path) -> bool:
    """Whether file modes bind this process (not for root with CAP_DAC_OVERRIDE)."""
    probe = folder / ".mode-probe"
    probe.write_text("")
    probe.chmod(0o444)
    try:
        with open(probe, "a"):
            return False
    except PermissionError:
        return True
    finally:
        probe.unlink()


# A toy study for real pytest sessions (pytester): 2 variants x `seeds` seeds, no hypothesis;
# `base` is its config shared by every run (Python source).
TOY = """
import random

from harness import ablation

study = ablation(variants={"base": {"gain": 0.0}, "better": {"gain": 0.2}}, seeds=SEEDS,
                 base=BASE, tiers={"synthetic": {"noise": [0.1]}})


@study
def test_toy(run):
    rng = random.Random(f"{run.seed}-{run.variant}")
    return {"acc": 0.5 + run.config["gain"] + rng.gauss(0, run.config["noise"])}
"""


def toy(seeds: int = 2, base: str = "{}") -> str:
    return TOY.replace("SEEDS", str(seeds)).replace("BASE", base)
