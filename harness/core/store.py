"""The results store: one SQLite file shared by every process of a session (and by later sessions).

One row per (session, run key). A row is claimed ("running") before its run is computed, so the
pytest-xdist workers of a session compute each run once; finished rows ("done", "failed") are
never changed again, so a crash can only leave a "running" row behind, which the next claimer
takes over once its owner's process is gone.

Concurrency: WAL journal (readers never block the single writer), a busy timeout instead of
"database is locked" errors, and `BEGIN IMMEDIATE` for every read-then-write so two processes
cannot both see a run as unclaimed. Each process uses its own connection: a connection inherited
through fork() is never touched (not even closed) in the child.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from harness.core.provenance import host

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, exitstatus INTEGER,
    argv TEXT NOT NULL, meta TEXT NOT NULL, host TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL, key TEXT NOT NULL,
    study TEXT NOT NULL, tier TEXT NOT NULL, knobs TEXT NOT NULL, variant TEXT NOT NULL,
    seed INTEGER NOT NULL, fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    metrics TEXT NOT NULL, failures TEXT NOT NULL, config TEXT NOT NULL, error TEXT,
    source TEXT NOT NULL CHECK (source IN ('run', 'store')),
    reused_from INTEGER REFERENCES runs(id), duration REAL,
    host TEXT NOT NULL, pid INTEGER NOT NULL, worker TEXT NOT NULL, device TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, versions TEXT NOT NULL, git_commit TEXT,
    inputs TEXT NOT NULL DEFAULT '{}', note TEXT,
    UNIQUE (session, key)
);
CREATE INDEX IF NOT EXISTS runs_reuse
    ON runs (study, tier, knobs, variant, seed, fingerprint, status);
CREATE TABLE IF NOT EXISTS studies (
    session TEXT NOT NULL, study TEXT NOT NULL, options TEXT NOT NULL,
    PRIMARY KEY (session, study));
CREATE TABLE IF NOT EXISTS verdicts (
    session TEXT NOT NULL, study TEXT NOT NULL, tier TEXT NOT NULL, knobs TEXT NOT NULL,
    hypothesis TEXT NOT NULL, metric TEXT, status TEXT, diff REAL, ci_lo REAL, ci_hi REAL,
    p REAL, p_adj REAL, test TEXT, n INTEGER, message TEXT,
    PRIMARY KEY (session, study, tier, knobs, hypothesis)
);
"""

_JSON_FIELDS = ("knobs", "metrics", "failures", "config", "versions", "inputs")
# Columns each schema version added to `runs`, with their definitions: opening an older store
# for writing adds them (reading it fills in their defaults).
_ADDED_COLUMNS = {2: {"inputs": "TEXT NOT NULL DEFAULT '{}'", "note": "TEXT"}}
_VERDICT_FIELDS = ("session", "study", "tier", "knobs", "hypothesis", "metric", "status", "diff",
                   "ci_lo", "ci_hi", "p", "p_adj", "test", "n", "message")


class StoreError(RuntimeError):
    """The store file cannot be used by this version of the harness."""


class SpecLike(Protocol):
    """What the store needs of a run spec (harness.core.study.RunSpec has it)."""

    study: str
    tier: str
    knobs: tuple[tuple[str, Any], ...]
    variant: str
    seed: int
    config: Mapping[str, Any]

    @property
    def key(self) -> str: ...

    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class Owner:
    """The process computing a run; a claim by a process that no longer exists can be taken over."""

    host: str
    pid: int
    worker: str

    @classmethod
    def current(cls, worker: str | None = None) -> Owner:
        """This process; `worker` defaults to the xdist worker id ("gw0") or "main"."""
        return cls(host(), os.getpid(), worker or os.environ.get("PYTEST_XDIST_WORKER", "main"))


@dataclass(frozen=True)
class RunRecord:
    """One row of the `runs` table, JSON columns decoded."""

    id: int
    session: str
    key: str  # RunSpec.key: identifies the run within its session
    study: str
    tier: str
    knobs: dict
    variant: str
    seed: int
    fingerprint: str
    status: str  # "running" | "done" | "failed"
    metrics: dict[str, float]
    failures: list[dict]
    config: dict
    error: str | None
    source: str  # "run": computed in its session | "store": adopted from an earlier session
    reused_from: int | None
    duration: float | None  # seconds of compute (for adopted rows: of the original run)
    host: str
    pid: int
    worker: str
    device: str
    started_at: str  # ISO-8601 UTC
    finished_at: str | None
    versions: dict
    git_commit: str | None
    inputs: dict[str, str]  # file -> content hash of everything the run read (harness.core.inputs)
    note: str | None  # why the run was computed although --reuse looked for it, or None


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys). NaN and infinities are kept: a NaN metric is a result."""
    return json.dumps(value, sort_keys=True)


def utc_now() -> str:
    """The store's timestamps: ISO 8601 in UTC."""
    return datetime.now(timezone.utc).isoformat()


def _record(row: sqlite3.Row) -> RunRecord:
    values = {"inputs": "{}", "note": None, **dict(row)}  # columns an older store lacks
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name])
    return RunRecord(**values)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number SQLite can bind (others unchanged)."""
    return value.item() if hasattr(value, "item") else value


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs; an exited but unreaped zombie does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _holder_gone(row: RunRecord, claimer: Owner) -> bool:
    """Whether a "running" row may be taken over by `claimer`.

    Only same-host owners can be checked; a row of the claimer's own pid is a leftover (a
    single-threaded process never waits on itself). Owners on other hosts are presumed alive.
    """
    if row.host != claimer.host:
        return False
    return row.pid == claimer.pid or not _pid_alive(row.pid)


class Store:
    """The SQLite results store at `path`; safe to open from many processes at once.

    Pickles as its path, so it can be handed to spawned processes. Like any sqlite3 connection,
    an instance belongs to one thread (open one Store per thread if ever needed).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._inherited: list[sqlite3.Connection] = []

    def exists(self) -> bool:
        """Whether the file is there: a Store creates it, and its schema, on first use only."""
        return self.path.is_file()

    def __reduce__(self) -> tuple:
        return Store, (self.path,)

    @property
    def db(self) -> sqlite3.Connection:
        """This process's connection, opened on first use and again after a fork."""
        if self._pid != os.getpid():
            if self._conn is not None:
                self._inherited.append(self._conn)  # keep it unclosed: closing it is unsafe too
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._pid = os.getpid()
            try:
                self._create_schema()
            except BaseException:  # e.g. a newer schema: every later use must refuse it too
                self._conn.close()
                self._conn, self._pid = None, -1
                raise
        return self._conn

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        elif self._conn is not None:
            self._inherited.append(self._conn)  # inherited through fork: see `db`
        self._conn, self._pid = None, -1

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front, so reads in it stay valid."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _create_schema(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is not None and row[0] > SCHEMA_VERSION:
                raise StoreError(
                    f"results store {self.path} has schema version {row[0]}, but this "
                    f"pytest-ablation only knows version {SCHEMA_VERSION}: upgrade "
                    f"pytest-ablation or use another store file")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if row[0] is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] < SCHEMA_VERSION:  # an older store: add the columns it lacks
                have = {column[1] for column in db.execute("PRAGMA table_info(runs)")}
                for version in range(row[0] + 1, SCHEMA_VERSION + 1):
                    for name, definition in _ADDED_COLUMNS.get(version, {}).items():
                        if name not in have:
                            db.execute(f"ALTER TABLE runs ADD COLUMN {name} {definition}")
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # sessions

    def begin_session(self, session: str, *, argv: list[str], meta: dict,
                      started_at: str | None = None) -> None:
        """Record a session start (now, unless `started_at` says when); idempotent, so every
        xdist worker may call it too."""
        self.db.execute(
            "INSERT OR IGNORE INTO sessions (session, started_at, argv, meta, host)"
            " VALUES (?, ?, ?, ?, ?)",
            (session, started_at or utc_now(), dumps(argv), dumps(meta), host()))

    def end_session(self, session: str, *, exitstatus: int) -> None:
        self.db.execute("UPDATE sessions SET finished_at = ?, exitstatus = ? WHERE session = ?",
                        (utc_now(), int(exitstatus), session))

    def sessions(self) -> list[dict]:
        """All sessions, oldest first, `argv` and `meta` decoded."""
        rows = self.db.execute("SELECT * FROM sessions ORDER BY started_at, rowid").fetchall()
        return [{**row, "argv": json.loads(row["argv"]), "meta": json.loads(row["meta"])}
                for row in map(dict, rows)]

    def latest_session(self) -> str | None:
        """The newest session that made or took any run (sessions without studies don't count)."""
        row = self.db.execute(
            "SELECT s.session FROM sessions s WHERE EXISTS (SELECT 1 FROM runs r WHERE "
            "r.session = s.session) ORDER BY s.started_at DESC, s.rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

    # runs

    def _get(self, db: sqlite3.Connection, session: str, key: str) -> RunRecord | None:
        row = db.execute("SELECT * FROM runs WHERE session = ? AND key = ?",
                         (session, key)).fetchone()
        return _record(row) if row else None

    def _by_id(self, row_id: int) -> RunRecord:
        return _record(self.db.execute("SELECT * FROM runs WHERE id = ?", (row_id,)).fetchone())

    def get(self, session: str, spec: SpecLike) -> RunRecord | None:
        return self._get(self.db, session, spec.key)

    def claim(self, session: str, spec: SpecLike, *, fingerprint: str, owner: Owner,
              config: dict, note: str | None = None) -> tuple[str, RunRecord | None]:
        """Atomically claim the run of `spec` in `session` for `owner`.

        Returns ("claimed", row) when `owner` must compute it now (a new row, or one taken over
        from a dead owner), ("done" | "failed", row) when it is finished, ("running", row)
        when a live owner holds it, or ("conflict", row) when the session's row was made with
        another fingerprint (other code or config): it is never taken for this one.
        """
        with self._write() as db:
            row = self._get(db, session, spec.key)
            if row is not None and row.fingerprint != fingerprint:
                return "conflict", row
            if row is None:
                db.execute(
                    "INSERT INTO runs (session, key, study, tier, knobs, variant, seed,"
                    " fingerprint, status, metrics, failures, config, source, host, pid, worker,"
                    " device, started_at, versions, note) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, 'running', '{}', '[]', ?, 'run', ?, ?, ?, '', ?,"
                    " '{}', ?)",
                    (session, spec.key, spec.study, spec.tier, dumps(dict(spec.knobs)),
                     spec.variant, spec.seed, fingerprint, dumps(config), owner.host, owner.pid,
                     owner.worker, utc_now(), note))
            elif row.status == "running" and _holder_gone(row, owner):
                db.execute(
                    "UPDATE runs SET fingerprint = ?, config = ?, host = ?, pid = ?, worker = ?,"
                    " started_at = ? WHERE id = ?",
                    (fingerprint, dumps(config), owner.host, owner.pid, owner.worker, utc_now(),
                     row.id))
            else:
                return row.status, row
            return "claimed", self._get(db, session, spec.key)

    def finish(self, row_id: int, *, metrics: Mapping[str, float], failures: list[dict],
               duration: float, device: str, versions: dict, git_commit: str | None,
               inputs: Mapping[str, str] | None = None) -> RunRecord:
        """Mark a claimed row done with its results and the inputs it read (a finished row is
        never changed)."""
        self.db.execute(
            "UPDATE runs SET status = 'done', metrics = ?, failures = ?, duration = ?, device = ?,"
            " versions = ?, git_commit = ?, inputs = ?, finished_at = ?"
            " WHERE id = ? AND status = 'running'",
            (dumps({k: float(v) for k, v in metrics.items()}), dumps(list(failures)), duration,
             device, dumps(versions), git_commit, dumps(dict(inputs or {})), utc_now(), row_id))
        return self._by_id(row_id)

    def fail(self, row_id: int, *, error: str, duration: float) -> RunRecord:
        """Mark a claimed row failed: the session will not retry it (a finished row stays)."""
        self.db.execute(
            "UPDATE runs SET status = 'failed', error = ?, duration = ?, finished_at = ?"
            " WHERE id = ? AND status = 'running'", (error, duration, utc_now(), row_id))
        return self._by_id(row_id)

    def release(self, row_id: int) -> None:
        """Drop a claim without a result (interrupted, skipped) so that it can be claimed again."""
        self.db.execute("DELETE FROM runs WHERE id = ? AND status = 'running'", (row_id,))

    def reuse_candidates(self, spec: SpecLike) -> list[RunRecord]:
        """Finished runs of the same study, tier, knobs, variant and seed that any session
        computed (not adopted), newest first (by finish time, then row id): the order in which
        `--reuse` tries them. Whether one may be reused is the caller's check of its inputs.

        Adopted rows are skipped so that `reused_from` always points at the row that computed.
        """
        rows = self.db.execute(
            "SELECT * FROM runs WHERE study = ? AND tier = ? AND knobs = ? AND variant = ?"
            " AND seed = ? AND status = 'done' AND source = 'run'"
            " ORDER BY finished_at DESC, id DESC",
            (spec.study, spec.tier, dumps(dict(spec.knobs)), spec.variant, spec.seed)).fetchall()
        return [_record(row) for row in rows]

    def adopt(self, session: str, record: RunRecord, owner: Owner, *,
              fingerprint: str | None = None) -> RunRecord:
        """Copy the done run `record` into `session` (source "store"), under this session's
        `fingerprint` of the run when given (the caller checked that the inputs are the same).

        Idempotent: when `session` already has a row for the run, that row is returned unchanged.
        """
        if record.status != "done":
            raise ValueError(f"only done runs can be adopted, run {record.id} is {record.status}")
        with self._write() as db:
            existing = self._get(db, session, record.key)
            if existing is not None:
                return existing
            copied = {f.name: getattr(record, f.name) for f in fields(RunRecord) if f.name != "id"}
            now = utc_now()
            copied.update(session=session, source="store", reused_from=record.id,
                          host=owner.host, pid=owner.pid, worker=owner.worker,
                          started_at=now, finished_at=now, note=None,
                          fingerprint=fingerprint or record.fingerprint)
            for name in _JSON_FIELDS:
                copied[name] = dumps(copied[name])
            db.execute(f"INSERT INTO runs ({', '.join(copied)}) VALUES"
                       f" ({', '.join('?' * len(copied))})", tuple(copied.values()))
            return self._get(db, session, record.key)

    def runs(self, session: str | None = None, study: str | None = None) -> list[RunRecord]:
        """Rows in insertion order, optionally of one session and/or one study."""
        rows = self.db.execute(
            "SELECT * FROM runs WHERE (?1 IS NULL OR session = ?1) AND (?2 IS NULL OR study = ?2)"
            " ORDER BY id", (session, study)).fetchall()
        return [_record(row) for row in rows]

    # studies: display options (metric groups, minimized metrics) for reports

    def save_study(self, session: str, study: str, options: dict) -> None:
        """Upsert how a study wants its tables shown; every xdist worker may call it. Key order
        is kept (not canonical JSON): it is the order of the tables."""
        self.db.execute("INSERT OR REPLACE INTO studies (session, study, options) VALUES (?, ?, ?)",
                        (session, study, json.dumps(options)))

    def study_options(self, session: str) -> dict[str, dict]:
        rows = self.db.execute("SELECT study, options FROM studies WHERE session = ?",
                               (session,)).fetchall()
        return {row["study"]: json.loads(row["options"]) for row in rows}

    # verdicts

    def save_verdicts(self, session: str, rows: list[dict]) -> None:
        """Upsert verdict rows by (session, study, tier, knobs, hypothesis).

        SQLite has no NaN: a NaN statistic is stored as NULL and read back as None.
        """
        names = ", ".join(_VERDICT_FIELDS)
        updates = ", ".join(f"{name} = excluded.{name}" for name in _VERDICT_FIELDS[5:])
        with self._write() as db:
            db.executemany(
                f"INSERT INTO verdicts ({names}) VALUES ({', '.join('?' * len(_VERDICT_FIELDS))})"
                f" ON CONFLICT (session, study, tier, knobs, hypothesis) DO UPDATE SET {updates}",
                [(session, row["study"], row["tier"], dumps(dict(row["knobs"])),
                  row["hypothesis"], *(_plain(row.get(name)) for name in _VERDICT_FIELDS[5:]))
                 for row in rows])

    def verdicts(self, session: str) -> list[dict]:
        """Verdict rows of `session` in first-saved order, `knobs` decoded."""
        rows = self.db.execute(
            "SELECT * FROM verdicts WHERE session = ? ORDER BY rowid", (session,)).fetchall()
        return [{**row, "knobs": json.loads(row["knobs"])} for row in map(dict, rows)]
