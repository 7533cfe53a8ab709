"""The SQLite results store, on real files: schema, round trips, claims, reuse, verdicts, broken
stores (each one clear error) and the read-only mode of reports."""

from __future__ import annotations

import math
import os
import pickle
import re
import sqlite3
import subprocess
import sys

import pytest

from harness.core.provenance import host
from harness.core.store import SCHEMA_VERSION, Owner, Store, StoreError, error_name
from tests.specs import Spec
from tests.stores import (
    BROKEN,
    SESSION,
    foreign,
    modes_apply,
    populated,
    save_verdicts,
    snapshot,
    version_1,
)

ME = Owner(host(), os.getpid(), "gw0")
FINISH = dict(duration=1.5, device="cpu", versions={"numpy": "2.0"}, git_commit="abc+dirty")


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "deep" / "dir" / "results.db") as store:
        yield store


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def done(store: Store, session: str, spec: Spec, fingerprint: str = "fp1", **metrics: float):
    status, row = store.claim(session, spec, fingerprint=fingerprint, owner=ME, config={})
    assert status == "claimed"
    return store.finish(row.id, metrics=metrics or {"acc": 0.5}, failures=[], **FINISH)


def test_opening_creates_nothing_until_first_use(tmp_path):
    store = Store(tmp_path / "deep" / "results.sqlite")
    assert not store.exists() and not (tmp_path / "deep").exists()
    assert store.latest_session() is None  # first use: folder, file and schema
    assert store.exists()


def test_schema_is_created_once_with_wal(store):
    store.sessions()
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "sessions", "runs", "verdicts"} <= tables
    Store(store.path).sessions()  # reopening adds nothing
    assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_newer_schema_is_refused(store):
    store.db.execute("UPDATE schema_version SET version = 99")
    newer = Store(store.path)
    for _ in range(2):  # every use refuses it, not only the first
        with pytest.raises(StoreError, match="schema version 99"):
            newer.sessions()


def test_sessions(store):
    assert store.latest_session() is None
    store.begin_session("s1", argv=["-x"], meta={"seed": 1})
    store.begin_session("s2", argv=[], meta={})
    store.begin_session("s1", argv=["again"], meta={})  # idempotent: a worker may call it too
    store.begin_session("s0", argv=[], meta={}, started_at="2026-01-01T00:00:00+00:00")
    store.end_session("s1", exitstatus=1)
    earliest, first, second = store.sessions()
    assert earliest["started_at"] == "2026-01-01T00:00:00+00:00"
    assert (first["session"], first["argv"], first["meta"], first["exitstatus"]) == (
        "s1", ["-x"], {"seed": 1}, 1)
    assert first["finished_at"].endswith("+00:00") and second["finished_at"] is None
    assert store.latest_session() is None  # sessions that made no run don't count
    store.claim("s1", Spec(), fingerprint="fp", owner=ME, config={})
    assert store.latest_session() == "s1"
    store.claim("s2", Spec(), fingerprint="fp", owner=ME, config={})
    assert store.latest_session() == "s2"


def test_run_round_trip_keeps_every_field(store):
    spec = Spec(knobs=(("noise_sigma", 0.5), ("depth", 2)))
    status, claimed = store.claim("s1", spec, fingerprint="fp1", owner=ME, config={"lr": 0.01})
    assert status == "claimed" and claimed.status == "running"
    failures = [{"sample": "song7", "error": "ValueError: empty"}]
    row = store.finish(claimed.id, metrics={"ctc/majmin": 0.75, "ar/root": math.nan,
                                            "loss": math.inf}, failures=failures, **FINISH)
    assert row == store.get("s1", spec) == store.runs("s1")[0]
    assert (row.session, row.key, row.study, row.tier, row.variant, row.seed) == (
        "s1", spec.key, "heads", "synthetic", "combined", 0)
    assert row.knobs == {"noise_sigma": 0.5, "depth": 2}
    assert (row.fingerprint, row.status, row.source, row.reused_from, row.error) == (
        "fp1", "done", "run", None, None)
    assert row.metrics["ctc/majmin"] == 0.75 and math.isnan(row.metrics["ar/root"])
    assert row.metrics["loss"] == math.inf
    assert row.failures == failures and row.config == {"lr": 0.01}
    assert (row.duration, row.device, row.versions, row.git_commit) == (
        1.5, "cpu", {"numpy": "2.0"}, "abc+dirty")
    assert (row.host, row.pid, row.worker) == (ME.host, ME.pid, "gw0")
    assert row.started_at <= row.finished_at and row.finished_at.endswith("+00:00")


def test_fail_keeps_the_error(store):
    _, row = store.claim("s1", Spec(), fingerprint="fp1", owner=ME, config={})
    row = store.fail(row.id, error="Traceback: boom", duration=0.1)
    assert (row.status, row.error, row.duration) == ("failed", "Traceback: boom", 0.1)
    assert store.claim("s1", Spec(), fingerprint="fp1", owner=ME, config={}) == ("failed", row)
    assert store.finish(row.id, metrics={}, failures=[], **FINISH) == row  # finished stays
    finished = done(store, "s1", Spec(seed=1))
    assert store.fail(finished.id, error="late", duration=0.0) == finished


def test_claim_semantics(store):
    live = Owner(host(), os.getppid(), "gw1")  # a live process that is not this one
    status, row = store.claim("s1", Spec(), fingerprint="fp1", owner=live, config={})
    assert status == "claimed"
    assert store.claim("s1", Spec(), fingerprint="fp1", owner=ME, config={}) == ("running", row)
    assert store.claim("s2", Spec(), fingerprint="fp1", owner=ME, config={})[0] == "claimed"
    assert store.claim("s1", Spec(seed=1), fingerprint="fp1", owner=ME, config={})[0] == "claimed"
    store.finish(row.id, metrics={"acc": 1.0}, failures=[], **FINISH)
    status, finished = store.claim("s1", Spec(), fingerprint="fp1", owner=ME, config={})
    assert (status, finished.metrics) == ("done", {"acc": 1.0})


def test_claim_fails_the_run_of_a_dead_owner_only_on_the_same_host(store):
    dead = Owner(host(), dead_pid(), "gw3")
    assert store.claim("s1", Spec(), fingerprint="fp1", owner=dead, config={})[0] == "claimed"
    status, row = store.claim("s1", Spec(), fingerprint="fp1", owner=ME, config={})
    assert (status, row.status, row.pid) == ("failed", "failed", dead.pid)
    assert f"died before it finished (pid {dead.pid}, gw3 on {host()})" in row.error
    assert store.claim("s1", Spec(), fingerprint="fp1", owner=ME, config={})[0] == "failed"
    assert store.claim("s2", Spec(), fingerprint="fp1", owner=ME, config={})[0] == "claimed"
    assert len(store.runs()) == 2

    mine = Owner(host(), ME.pid, "gw9")  # a leftover of this process: computed again
    store.claim("s3", Spec(), fingerprint="fp1", owner=mine, config={})
    status, row = store.claim("s3", Spec(), fingerprint="fp1", owner=ME, config={})
    assert (status, row.worker) == ("claimed", "gw0")

    elsewhere = Owner("other-host", dead.pid, "gw3")  # cannot be checked: presumed alive
    store.claim("s1", Spec(seed=1), fingerprint="fp1", owner=elsewhere, config={})
    assert store.claim("s1", Spec(seed=1), fingerprint="fp1", owner=ME, config={})[0] == "running"


def test_release_lets_the_run_be_claimed_again(store):
    _, row = store.claim("s1", Spec(), fingerprint="fp1", owner=ME, config={})
    store.release(row.id)
    assert store.get("s1", Spec()) is None


def test_reuse_candidates_are_the_same_runs_finished_newest_first(store):
    old = done(store, "s1", Spec(), acc=0.1)
    newer = done(store, "s2", Spec(), acc=0.2)
    other_code = done(store, "s3", Spec(), fingerprint="fp2")  # the caller checks the inputs
    store.claim("s4", Spec(), fingerprint="fp1", owner=ME, config={})  # running: not reusable
    assert store.reuse_candidates(Spec()) == [other_code, newer, old]
    assert store.reuse_candidates(Spec(seed=1)) == []
    assert store.reuse_candidates(Spec(knobs=(("noise_sigma", 1.0),))) == []


def test_adopt_is_idempotent_and_marks_the_source(store):
    original = done(store, "s1", Spec(), acc=0.3)
    other = Owner(host(), os.getpid(), "gw5")
    adopted = store.adopt("s2", original, other)
    assert store.adopt("s2", original, ME) == adopted
    assert (adopted.session, adopted.source, adopted.reused_from, adopted.worker) == (
        "s2", "store", original.id, "gw5")
    assert (adopted.metrics, adopted.fingerprint, adopted.status) == ({"acc": 0.3}, "fp1", "done")
    assert store.get("s2", Spec()) == adopted and len(store.runs("s2")) == 1
    assert store.reuse_candidates(Spec()) == [original]  # copies never shadow the original
    with pytest.raises(ValueError, match="only done runs"):
        store.adopt("s3", store.claim("s9", Spec(seed=5), fingerprint="f", owner=ME,
                                      config={})[1], ME)


def test_runs_filters_by_session_and_study(store):
    done(store, "s1", Spec())
    done(store, "s1", Spec(study="other"))
    done(store, "s2", Spec())
    assert len(store.runs()) == 3
    assert [r.study for r in store.runs("s1")] == ["heads", "other"]
    assert [r.session for r in store.runs(study="heads")] == ["s1", "s2"]
    assert len(store.runs("s1", "other")) == 1


def test_verdicts_upsert(store):
    base = dict(study="heads", tier="synthetic", knobs={"noise_sigma": 0.5},
                hypothesis="combined>=ctc_only", metric="joint/majmin", status="pass", diff=0.02,
                ci_lo=0.01, ci_hi=0.03, p=0.01, p_adj=0.02, test="t", n=3, message="",
                mean_a=0.82, mean_b=0.80, baseline=None, kind="hypothesis",
                detail={"levels": ["0.5", "1.0"]})
    save_verdicts(store, "s1", [base, {**base, "hypothesis": "h2", "p": math.nan}])
    save_verdicts(store, "s1", [{**base, "status": "fail", "message": "worse"}])
    save_verdicts(store, "s2", [base])
    first, second = store.verdicts("s1")
    # the claim in words, its margin and alpha have no columns: they are kept in `detail`
    detail = {"claim": "", "margin": 0.0, "alpha": 0.05, **base["detail"]}
    assert first == {**base, "session": "s1", "status": "fail", "message": "worse",
                     "detail": detail}
    assert second["hypothesis"] == "h2" and second["p"] is None  # SQLite stores NaN as NULL
    assert len(store.verdicts("s2")) == 1


def _open_and_claim(path: str, seed: int, barrier) -> None:
    barrier.wait()
    Store(path).claim("s1", Spec(seed=seed), fingerprint="fp", owner=Owner.current(),
                      config={})


def test_processes_creating_one_store_at_once_all_get_it(tmp_path):
    """Switching a new store to WAL is not covered by SQLite's busy timeout: processes that
    open a new store at the same moment got "database is locked" without a retry."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for attempt in range(6):
        path = str(tmp_path / f"results-{attempt}.db")
        barrier = context.Barrier(6)
        children = [context.Process(target=_open_and_claim, args=(path, seed, barrier))
                    for seed in range(6)]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
        assert [child.exitcode for child in children] == [0] * 6
        assert len(Store(path).runs("s1")) == 6


def test_reconnects_after_fork(store):
    store.begin_session("parent", argv=[], meta={})
    pid = os.fork()
    if pid == 0:  # the child must open its own connection, not reuse the parent's
        try:
            store.begin_session("child", argv=[], meta={})
            os._exit(0 if store.sessions()[-1]["session"] == "child" else 1)
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0
    assert [s["session"] for s in store.sessions()] == ["parent", "child"]


def test_pickles_with_its_mode(tmp_path):
    copy = pickle.loads(pickle.dumps(Store(tmp_path / "r.sqlite", readonly=True, option="--x")))
    assert (copy.path, copy.readonly, copy.option) == (tmp_path / "r.sqlite", True, "--x")


# -- broken stores: one StoreError naming the file, what is wrong and the fix ---------------------


@pytest.mark.parametrize("readonly", [False, True], ids=["session", "report"])
@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_store_is_one_clear_error(tmp_path, kind, readonly):
    make, problem = BROKEN[kind]
    path = make(tmp_path / "results.sqlite")
    before = snapshot(path)
    with pytest.raises(StoreError) as error, Store(path, readonly=readonly) as store:
        store.sessions()
    assert str(error.value).startswith(f"results store {path} {problem}" if kind != "foreign"
                                       else f"{path} {problem}")
    assert "--ablation-store PATH" in str(error.value) or kind == "newer"
    assert snapshot(path) == before  # refused before anything was written


def test_a_directory_is_no_store(tmp_path):
    for readonly in (False, True):
        with pytest.raises(StoreError, match="^results store .* is a directory: pass a file path "
                                             r"\(--ablation-store PATH\)$"):
            Store(tmp_path, readonly=readonly).sessions()


def test_a_session_never_adds_its_tables_to_a_foreign_database(tmp_path):
    path = foreign(tmp_path / "app.db")
    for _ in range(2):  # every use refuses it, not only the first
        with pytest.raises(StoreError, match="not a pytest-ablation results store"):
            Store(path).begin_session("s1", argv=[], meta={})
    db = sqlite3.connect(path)
    assert [row[0] for row in db.execute("SELECT name FROM sqlite_master")] == ["users"]


def test_a_full_disk_keeps_the_runs_finished_before(tmp_path):
    """SQLite's max_page_count stands in for the disk: writes past it fail with SQLITE_FULL."""
    store = Store(tmp_path / "results.sqlite")
    done(store, "s1", Spec(seed=0))
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError) as error:
        for seed in range(1, 1000):
            done(store, "s1", Spec(seed=seed), **{f"metric{i}": 0.5 for i in range(100)})
    assert str(error.value) == (f"the disk holding results store {store.path} is full: free "
                                f"space; runs finished so far are kept in the store")
    store.close()
    finished = [r.seed for r in Store(store.path).runs() if r.status == "done"]
    assert finished[0] == 0 and len(finished) >= 1


def test_sqlite_errors_are_named_without_sqlite_errorname():
    """Python 3.10's sqlite3 errors carry no `sqlite_errorname`: the message names them."""
    assert not hasattr(sqlite3.OperationalError("x"), "sqlite_errorname")
    assert error_name(sqlite3.OperationalError("database or disk is full")) == "SQLITE_FULL"
    assert error_name(sqlite3.DatabaseError("file is not a database")) == "SQLITE_NOTADB"
    assert error_name(sqlite3.OperationalError("something else")) == ""


@pytest.fixture
def modes(tmp_path):
    """Skip where file modes don't bind (root): tests/test_store_failures.py drops root's
    override for its sessions instead."""
    if not modes_apply(tmp_path):
        pytest.skip("file modes don't bind this process (root with CAP_DAC_OVERRIDE)")
    yield
    for folder, _, _ in os.walk(tmp_path):
        os.chmod(folder, 0o755)


def test_a_read_only_file_is_one_clear_error_and_the_report_still_reads_it(tmp_path, modes):
    path = populated(tmp_path / "results.sqlite")
    path.chmod(0o444)
    with pytest.raises(StoreError, match=rf"^results store {path} is read-only \(.*\): make it "
                                         rf"writable \(chmod u\+w {path}\) or pass "
                                         "--ablation-store to a writable path$"):
        Store(path).begin_session("s2", argv=[], meta={})
    assert sorted(os.listdir(tmp_path)) == ["results.sqlite"]  # no -wal, no -shm
    assert len(Store(path, readonly=True).runs()) == 6


@pytest.mark.parametrize("where", ["store", "new store", "new folder"])
def test_a_read_only_folder_is_one_clear_error(tmp_path, modes, where):
    folder = tmp_path / "ro"
    populated(folder / "results.sqlite")
    folder.chmod(0o555)
    path = {"store": folder / "results.sqlite", "new store": folder / "new.sqlite",
            "new folder": folder / "sub" / "new.sqlite"}[where]
    with pytest.raises(StoreError, match=rf"^the folder {folder} of results store {path} is "
                                         rf"read-only \(.*\): make it writable \(chmod u\+w "
                                         rf"{folder}\) or pass --ablation-store to a writable"):
        Store(path).begin_session("s2", argv=[], meta={})


def test_check_refuses_up_front_and_creates_nothing(tmp_path):
    Store(tmp_path / "new" / "results.sqlite").check()
    assert list(tmp_path.iterdir()) == []
    populated(tmp_path / "whole.sqlite")
    Store(tmp_path / "whole.sqlite").check()
    for kind, (make, problem) in BROKEN.items():
        with pytest.raises(StoreError, match=re.escape(problem)):
            Store(make(tmp_path / kind / "results.sqlite")).check()


def test_check_refuses_a_read_only_folder_for_a_new_store(tmp_path, modes):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(StoreError, match=r"the folder .*/ro of results store .*/ro/new/x\.sqlite "
                                         r"is read-only \(Permission denied"):
        Store(tmp_path / "ro" / "new" / "x.sqlite").check()


# -- read-only mode: reports never write -------------------------------------------------------


def test_read_only_mode_reads_an_older_store_as_it_is(tmp_path):
    path = version_1(tmp_path / "results.sqlite")
    before = snapshot(path)
    with Store(path, readonly=True) as old:
        runs = old.runs()
        assert len(runs) == 6 and all((r.inputs, r.note) == ({}, None) for r in runs)
        assert all((r.kind, r.resources, r.stages) == ("run", {}, []) for r in runs)
        assert old.runs(kind="stage") == []  # stores before stages have none
        assert old.latest_session() == SESSION and len(old.verdicts(SESSION)) == 1
    assert snapshot(path) == before


def test_opening_an_older_store_for_writing_adds_its_new_columns(tmp_path):
    path = version_1(tmp_path / "results.sqlite")
    with Store(path) as store:
        assert len(store.runs()) == 6
        assert {row[0] for row in store.db.execute("SELECT version FROM schema_version")} == {
            SCHEMA_VERSION}
        done(store, "s2", Spec(seed=9))
        assert store.runs("s2")[0].inputs == {}
        save_verdicts(store, "s2", [{"study": "heads", "tier": "t", "knobs": {},
                                    "hypothesis": "a>=baseline[acc]", "mean_a": 0.5,
                                    "baseline": "s1"}])
        assert store.verdicts("s2")[0]["mean_a"] == 0.5  # version 3's columns too


def test_read_only_mode_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(StoreError, match=r"^no results store at .*missing\.sqlite: run the "
                                         r"studies first or pass --store PATH$"):
        Store(tmp_path / "missing.sqlite", readonly=True, option="--store").runs()
    (tmp_path / "empty.sqlite").touch()
    with pytest.raises(StoreError, match="is empty"):
        Store(tmp_path / "empty.sqlite", readonly=True).runs()
    assert not (tmp_path / "missing.sqlite").exists()
    assert (tmp_path / "empty.sqlite").read_bytes() == b""


def test_read_only_mode_sees_what_a_live_session_committed(tmp_path):
    path = populated(tmp_path / "results.sqlite")
    with Store(path) as writer:
        done(writer, "s2", Spec(seed=7))  # committed to the -wal file, not yet to the store
        files = sorted(os.listdir(tmp_path))
        assert files == ["results.sqlite", "results.sqlite-shm", "results.sqlite-wal"]
        with Store(path, readonly=True) as reader:
            assert [r.seed for r in reader.runs("s2")] == [7]
        done(writer, "s2", Spec(seed=8))  # the reader held no lock that blocks the writer
    assert sorted(os.listdir(tmp_path)) == ["results.sqlite"]
