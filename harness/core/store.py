"""The results store: one SQLite file shared by every process of a session (and by later sessions).

One row per (session, run key). A row is claimed ("running") before its run is computed, so the
pytest-xdist workers of a session compute each run once; finished rows ("done", "failed") are
never changed again, so a crash can only leave a "running" row behind; the next claimer in the
session finds its owner's process gone and fails it (a run that killed its process is not tried
again in that session; the next session computes it).

Concurrency: WAL journal (readers never block the single writer), a busy timeout instead of
"database is locked" errors, and `BEGIN IMMEDIATE` for every read-then-write so two processes
cannot both see a run as unclaimed. Each process uses its own connection: a connection inherited
through fork() is never touched (not even closed) in the child.

Failures: every SQLite or file-system error a Store method meets becomes one StoreError whose
message names the file, what is wrong with it and the fix; what was committed before stays.
`Store(path, readonly=True)` (reports) never writes: no journal switch, no schema, no migration,
no -wal/-shm files left behind.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

from harness.core.provenance import host
from harness.core.study import setting_id

SCHEMA_VERSION = 4
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
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
    kind TEXT NOT NULL DEFAULT 'run', resources TEXT NOT NULL DEFAULT '{}',
    stages TEXT NOT NULL DEFAULT '[]', init TEXT NOT NULL DEFAULT '{}', artifact TEXT,
    UNIQUE (session, key)
);
CREATE INDEX IF NOT EXISTS runs_reuse ON runs (key, status);
CREATE TABLE IF NOT EXISTS studies (
    session TEXT NOT NULL, study TEXT NOT NULL, options TEXT NOT NULL,
    PRIMARY KEY (session, study));
CREATE TABLE IF NOT EXISTS verdicts (
    session TEXT NOT NULL, study TEXT NOT NULL, tier TEXT NOT NULL, knobs TEXT NOT NULL,
    hypothesis TEXT NOT NULL, metric TEXT, status TEXT, diff REAL, ci_lo REAL, ci_hi REAL,
    p REAL, p_adj REAL, test TEXT, n INTEGER, message TEXT, mean_a REAL, mean_b REAL,
    baseline TEXT, kind TEXT, detail TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (session, study, tier, knobs, hypothesis)
);
"""

_JSON_FIELDS = ("knobs", "metrics", "failures", "config", "versions", "inputs", "resources",
                "stages", "init")
# Columns each schema version added to `runs`, with their definitions: opening an older store
# for writing adds them (reading it fills in their defaults).
_ADDED_COLUMNS = {2: {"runs": {"inputs": "TEXT NOT NULL DEFAULT '{}'", "note": "TEXT"}},
                  3: {"verdicts": {"mean_a": "REAL", "mean_b": "REAL", "baseline": "TEXT"}},
                  4: {"runs": {"kind": "TEXT NOT NULL DEFAULT 'run'",
                               "resources": "TEXT NOT NULL DEFAULT '{}'",
                               "stages": "TEXT NOT NULL DEFAULT '[]'",
                               "init": "TEXT NOT NULL DEFAULT '{}'", "artifact": "TEXT"},
                      "verdicts": {"kind": "TEXT", "detail": "TEXT NOT NULL DEFAULT '{}'"}}}
# Indexes each schema version added (an older store gets them when opened for writing).
_ADDED_INDEXES = {4: ("DROP INDEX IF EXISTS runs_reuse",
                      "CREATE INDEX IF NOT EXISTS runs_reuse ON runs (key, status)")}
_VERDICT_FIELDS = ("session", "study", "tier", "knobs", "hypothesis", "metric", "status", "diff",
                   "ci_lo", "ci_hi", "p", "p_adj", "test", "n", "message", "mean_a", "mean_b",
                   "baseline", "kind", "detail")


def _schema_columns() -> dict[str, list[str]]:
    """Table -> columns of the current schema, read back from SQLite itself."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {table: [column[1] for column in db.execute(f"PRAGMA table_info({table})")]
                for table in tables}
    finally:
        db.close()


_COLUMNS = _schema_columns()

# The error names of SQLite's generic messages, for Pythons before 3.11 (no sqlite_errorname).
_NAMES_BY_MESSAGE = {
    "file is not a database": "SQLITE_NOTADB",
    "database disk image is malformed": "SQLITE_CORRUPT",
    "attempt to write a readonly database": "SQLITE_READONLY",
    "database or disk is full": "SQLITE_FULL",
    "unable to open database file": "SQLITE_CANTOPEN",
    "disk I/O error": "SQLITE_IOERR",
    "database is locked": "SQLITE_BUSY",
    "database table is locked": "SQLITE_LOCKED",
}


class StoreError(RuntimeError):
    """The store file cannot be used: the message names it, what is wrong and the fix."""


def error_name(exc: sqlite3.Error) -> str:
    """`SQLITE_READONLY`-style name of a SQLite error ("" when unknown), on every Python."""
    name = getattr(exc, "sqlite_errorname", None)
    if name:
        return name
    return next((n for message, n in _NAMES_BY_MESSAGE.items() if message in str(exc)), "")


def _existing_folder(path: Path) -> Path:
    """The nearest folder above `path` that exists (where a new store would be created)."""
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(_existing_folder(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _disk_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(_existing_folder(path)).free == 0
    except OSError:
        return False


class SpecLike(Protocol):
    """What the store needs of a run or stage spec (harness.core.study.RunSpec,
    harness.core.stages.StageSpec)."""

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

    @property
    def kind(self) -> str: ...


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
    kind: str = "run"  # "run" | "stage" (an intermediate result runs share: harness.stages)
    resources: dict = field(default_factory=dict)  # wall_s, peak_rss_mb, ... (core.resources)
    stages: list = field(default_factory=list)  # the stages a run used: name, id, row, computed
    init: dict = field(default_factory=dict)  # tensor name -> hash of the initial state
    artifact: str | None = None  # a stage's stored value: its folder, relative to the store's


@dataclass(frozen=True)
class VerdictRow:
    """One decided claim at one setting, whatever its kind (a hypothesis, a guard, a knob
    claim): what the store keeps of it (a row of `verdicts`), the junit properties and the
    tables' input. `knobs` are the setting's; for a knob claim, the group's other knobs."""

    study: str
    tier: str
    knobs: dict
    hypothesis: str  # the item's label, `combined>=ctc_only[joint/labels/majmin]`
    kind: str  # "hypothesis" | "guard" | "compare" | "trend" | "best"
    claim: str  # in words: `combined >= ctc_only`, `acc increases with frac`
    metric: str
    status: str
    message: str
    margin: float = 0.0
    alpha: float = 0.05
    test: str = "t"
    n: int = 0
    diff: float | None = None  # a paired claim's mean difference; a trend's rho
    ci_lo: float | None = None
    ci_hi: float | None = None
    p: float | None = None  # the supporting p-value, and after the family's correction
    p_adj: float | None = None
    mean_a: float | None = None
    mean_b: float | None = None
    baseline: str | None = None  # a guard's baseline session
    detail: dict = field(default_factory=dict)  # a knob claim's levels, means, winner, ...

    def as_dict(self) -> dict:
        """The row as the tables and reports read it (with its setting's id)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "setting": setting_id(self.tier, tuple(self.knobs.items()))}


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys). NaN and infinities are kept: a NaN metric is a result."""
    return json.dumps(value, sort_keys=True)


def utc_now() -> str:
    """The store's timestamps: ISO 8601 in UTC."""
    return datetime.now(timezone.utc).isoformat()


def _record(row: sqlite3.Row) -> RunRecord:
    values = {"inputs": "{}", "note": None, "kind": "run", "resources": "{}", "stages": "[]",
              "init": "{}", "artifact": None, **dict(row)}  # columns an older store lacks
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name])
    return RunRecord(**values)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number SQLite can bind (others unchanged)."""
    return value.item() if hasattr(value, "item") else value


def _wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. The switch takes an exclusive lock that SQLite does not wait for (no
    busy handler), so processes opening a new store at once can get "database is locked":
    retry until the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if error_name(exc) not in ("SQLITE_BUSY", "SQLITE_LOCKED") \
                    or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


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


def _holder_died(row: RunRecord, claimer: Owner) -> bool:
    """Whether the process of a "running" row died (another pid of this host, not alive).
    Owners on other hosts cannot be checked and are presumed alive."""
    return row.host == claimer.host and row.pid != claimer.pid and not _pid_alive(row.pid)


def _died_error(row: RunRecord) -> str:
    return (f"the process computing this run died before it finished (pid {row.pid}, "
            f"{row.worker} on {row.host}): killed, crashed, out of memory, or stopped by a "
            f"--timeout with the thread method. It is not trained again in this session, "
            f"where it would likely die again; the next session computes it (with --reuse, "
            f"only what is missing).")


T = TypeVar("T")


def _store_errors(cls: type[T]) -> type[T]:
    """Turn every sqlite3 and OS error of the class's public methods into a StoreError that
    says what is wrong with the file and how to fix it: the one place errors are translated."""

    def guard(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(self._problem(exc)) from exc

        return guarded

    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_"):
            setattr(cls, name, guard(member))
    return cls


@_store_errors
class Store:
    """The SQLite results store at `path`; safe to open from many processes at once.

    `readonly=True` opens it for reading only (reports): the file is never changed, and a file
    that is not a store (or a newer one) is refused; an older store is read as it is.
    `option` is how the user picks another store, for error messages.

    Pickles as its path, so it can be handed to spawned processes. Like any sqlite3 connection,
    an instance belongs to one thread (open one Store per thread if ever needed).
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False,
                 option: str = "--ablation-store"):
        self.path = Path(path)
        self.readonly = readonly
        self.option = option
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._inherited: list[sqlite3.Connection] = []

    def exists(self) -> bool:
        """Whether the file is there: a Store creates it, and its schema, on first use only."""
        return self.path.is_file()

    def check(self) -> None:
        """Raise the StoreError that using the store would raise, up front (before a session
        collects anything). A store that is not there yet is not created: only its folder is
        checked for being writable."""
        if self.path.exists():
            self.db  # noqa: B018 (opening it checks it)
            return
        folder = _existing_folder(self.path)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))

    def __reduce__(self) -> tuple:
        return Store, (self.path, self.readonly, self.option)

    @property
    def db(self) -> sqlite3.Connection:
        """This process's connection, opened on first use and again after a fork."""
        if self._pid != os.getpid():
            if self._conn is not None:
                self._inherited.append(self._conn)  # keep it unclosed: closing it is unsafe too
                self._conn = None
            conn = self._open_readonly() if self.readonly else self._open()
            try:
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                self._version(conn)  # refuse a file that is not ours before changing anything
                if not self.readonly:
                    _wal(conn)
                    conn.execute("PRAGMA synchronous = NORMAL")
                    self._create_schema(conn)
            except BaseException:  # e.g. a newer schema: every later use must refuse it too
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self.path.is_file() and not os.access(self.path, os.W_OK):
            # refused up front: SQLite would open it, leave -wal and -shm files beside it, and
            # fail only at the first write
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self.path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)

    def _open_readonly(self) -> sqlite3.Connection:
        """Read without writing anything: `mode=ro`; and `immutable=1` when there is no -wal
        file (no session writing, none crashed), since even a read-only connection to a WAL
        database creates -wal and -shm files and leaves them behind."""
        if not self.path.exists():
            raise StoreError(f"no results store at {self.path}: run the studies first or pass "
                             f"{self.option} PATH")
        wal = self.path.with_name(self.path.name + "-wal")
        query = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        return sqlite3.connect(f"{self.path.absolute().as_uri()}?{query}", uri=True,
                               timeout=BUSY_TIMEOUT_S, isolation_level=None)

    def _problem(self, exc: BaseException) -> str:
        """What is wrong with the store and the fix, in one line, from an error it raised."""
        path, option = self.path, self.option
        name = error_name(exc) if isinstance(exc, sqlite3.Error) else ""
        what = (f"{name or type(exc).__name__}: {exc}" if isinstance(exc, sqlite3.Error)
                else getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}")
        folder = _existing_folder(path)
        writable = f"pass {option} to a writable path"
        if path.is_dir():
            return f"results store {path} is a directory: pass a file path ({option} PATH)"
        if name.startswith("SQLITE_NOTADB"):
            return (f"results store {path} is not a SQLite database ({exc}): move it away or "
                    f"pass {option} PATH")
        if name.startswith("SQLITE_CORRUPT"):
            return (f"results store {path} is damaged ({exc}): move it away (sqlite3's .recover "
                    f"may save its runs) or pass {option} PATH")
        if name.startswith("SQLITE_FULL") or _disk_full(path):
            return (f"the disk holding results store {path} is full: free space; runs finished "
                    f"so far are kept in the store")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return (f"results store {path} stayed locked by another process for "
                    f"{BUSY_TIMEOUT_S:.0f} s ({exc}): let it finish, or pass {option} PATH")
        if self.readonly and path.exists() and not os.access(path, os.R_OK):
            return (f"results store {path} cannot be read ({what}): make it readable (chmod u+r "
                    f"{path}) or pass {option} PATH")
        if not self.readonly and _read_only_filesystem(path):
            return (f"results store {path} is on a read-only file system ({what}): remount it "
                    f"writable or {writable}")
        if not self.readonly and path.exists() and not os.access(path, os.R_OK | os.W_OK):
            return (f"results store {path} is read-only ({what}): make it writable (chmod u+w "
                    f"{path}) or {writable}")
        if not self.readonly and not os.access(folder, os.W_OK | os.X_OK):
            return (f"the folder {folder} of results store {path} is read-only ({what}; SQLite "
                    f"creates the store's -wal and -shm files there): make it writable (chmod "
                    f"u+w {folder}) or {writable}")
        return f"results store {path} cannot be used ({what}): pass {option} PATH"

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
    def _write(self, db: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front, so reads in it stay valid
        (on `db` while it is being opened, else on this process's connection)."""
        db = self.db if db is None else db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # SQLite already rolled back after e.g. a full disk
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _version(self, db: sqlite3.Connection) -> int | None:
        """The store's schema version, None for a database without tables (a new store).

        Refuses a database of something else (a new store must not be mixed into it) and a
        store of a newer pytest-ablation.
        """
        tables = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        if not tables:
            if self.readonly:
                raise StoreError(f"results store {self.path} is empty (a SQLite file without "
                                 f"tables): run the studies first or pass {self.option} PATH")
            return None
        lacks = sorted(set(_COLUMNS) - tables)
        version = None if lacks else db.execute(
            "SELECT max(version) FROM schema_version").fetchone()[0]
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"results store {self.path} has schema version {version}, but this "
                f"pytest-ablation only knows version {SCHEMA_VERSION}: upgrade pytest-ablation "
                f"or use another store file")
        if not lacks and version is None:
            lacks = ["a schema version"]
        elif not lacks:  # every column its version had
            added = {(table, name) for later in range(version + 1, SCHEMA_VERSION + 1)
                     for table, columns in _ADDED_COLUMNS.get(later, {}).items()
                     for name in columns}
            lacks = [f"{table}.{column}" for table, columns in _COLUMNS.items()
                     for column in columns
                     if (table, column) not in added and column not in self._columns(db, table)]
        if lacks:
            listed = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
            partly = f"; it lacks {', '.join(lacks)}" if tables & set(_COLUMNS) else ""
            raise StoreError(
                f"{self.path} is a SQLite database but not a pytest-ablation results store "
                f"(its tables: {listed}{partly}): leave it alone and pass {self.option} PATH "
                f"for the results")
        return version

    @staticmethod
    def _columns(db: sqlite3.Connection, table: str) -> set[str]:
        return {column[1] for column in db.execute(f"PRAGMA table_info({table})")}

    def _create_schema(self, db: sqlite3.Connection) -> None:
        """A new store gets the schema; an older one the columns it lacks (and a new version)."""
        with self._write(db):
            version = self._version(db)
            if version == SCHEMA_VERSION:
                return
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if version is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                return
            for later in range(version + 1, SCHEMA_VERSION + 1):
                for table, columns in _ADDED_COLUMNS.get(later, {}).items():
                    have = self._columns(db, table)
                    for name, definition in columns.items():
                        if name not in have:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
                for statement in _ADDED_INDEXES.get(later, ()):
                    db.execute(statement)
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

    def has_session(self, session: str) -> bool:
        return self.db.execute("SELECT 1 FROM sessions WHERE session = ?",
                               (session,)).fetchone() is not None

    def has_runs(self, session: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE session = ? LIMIT 1",
                               (session,)).fetchone() is not None

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

        Returns ("claimed", row) when `owner` must compute it now (a new row, or a leftover of
        this very process), ("done" | "failed", row) when it is finished or the process that
        computed it died (the row is then failed: a run that killed its process is not tried
        again in the session), ("running", row) when a live owner holds it, or ("conflict",
        row) when the session's row was made with another fingerprint (other code or config):
        it is never taken for this one.
        """
        with self._write() as db:
            row = self._get(db, session, spec.key)
            if row is not None and row.fingerprint != fingerprint:
                return "conflict", row
            if row is None:
                db.execute(
                    "INSERT INTO runs (session, key, study, tier, knobs, variant, seed,"
                    " fingerprint, status, metrics, failures, config, source, host, pid, worker,"
                    " device, started_at, versions, note, kind) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, 'running', '{}', '[]', ?, 'run', ?, ?, ?, '', ?,"
                    " '{}', ?, ?)",
                    (session, spec.key, spec.study, spec.tier, dumps(dict(spec.knobs)),
                     spec.variant, spec.seed, fingerprint, dumps(config), owner.host, owner.pid,
                     owner.worker, utc_now(), note, spec.kind))
            elif row.status == "running" and (row.host, row.pid) == (owner.host, owner.pid):
                # a leftover of this very process (a single-threaded process never waits on
                # itself): compute it now
                db.execute("UPDATE runs SET fingerprint = ?, config = ?, worker = ?,"
                           " started_at = ? WHERE id = ?",
                           (fingerprint, dumps(config), owner.worker, utc_now(), row.id))
            elif row.status == "running" and _holder_died(row, owner):
                db.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ?"
                           " WHERE id = ?", (_died_error(row), utc_now(), row.id))
                return "failed", self._get(db, session, spec.key)
            else:
                return row.status, row
            return "claimed", self._get(db, session, spec.key)

    def finish(self, row_id: int, *, metrics: Mapping[str, float], failures: list[dict],
               duration: float, device: str, versions: dict, git_commit: str | None,
               inputs: Mapping[str, str] | None = None, resources: Mapping[str, Any] | None = None,
               stages: list[dict] | None = None, init: Mapping[str, str] | None = None,
               artifact: str | None = None) -> RunRecord:
        """Mark a claimed row done with its results, the inputs it read, the resources it used,
        the stages it took and its initial state (a finished row is never changed)."""
        self.db.execute(
            "UPDATE runs SET status = 'done', metrics = ?, failures = ?, duration = ?, device = ?,"
            " versions = ?, git_commit = ?, inputs = ?, resources = ?, stages = ?, init = ?,"
            " artifact = ?, finished_at = ? WHERE id = ? AND status = 'running'",
            (dumps({k: float(v) for k, v in metrics.items()}), dumps(list(failures)), duration,
             device, dumps(versions), git_commit, dumps(dict(inputs or {})),
             dumps(dict(resources or {})), dumps(list(stages or [])), dumps(dict(init or {})),
             artifact, utc_now(), row_id))
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

    def ingest(self, session: str, run: Mapping[str, Any],
               stages: Sequence[Mapping[str, Any]] = ()) -> tuple[bool, RunRecord]:
        """Insert a finished row computed elsewhere (a job's, from harness.launch) into
        `session`, with the stage rows it used (each unless the session has that stage; the
        run's `stages` then point at the session's rows). Returns (inserted, row): a run the
        session already has is left alone, so ingesting a result twice changes nothing."""
        if run.get("status") not in ("done", "failed"):
            raise ValueError(f"only finished rows can be ingested, not {run.get('status')!r}")
        with self._write() as db:
            existing = self._get(db, session, run["key"])
            if existing is not None:
                return False, existing
            ids = {stage["id"]: (self._get(db, session, stage["key"])
                                 or self._insert(db, session, stage)).id for stage in stages}
            used = [{**u, "row": ids.get(u.get("row"), u.get("row"))}
                    for u in run.get("stages") or []]
            return True, self._insert(db, session, {**run, "stages": used})

    def _insert(self, db: sqlite3.Connection, session: str,
                values: Mapping[str, Any]) -> RunRecord:
        """A new row of `session` from a row's values (its id is the store's to give)."""
        row = {f.name: values[f.name] for f in fields(RunRecord)
               if f.name != "id" and f.name in values}
        row.update(session=session, reused_from=None)
        for name in _JSON_FIELDS:
            if name in row:
                row[name] = dumps(row[name])
        db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                   tuple(row.values()))
        return self._get(db, session, values["key"])  # type: ignore[return-value]

    def reuse_candidates(self, spec: SpecLike) -> list[RunRecord]:
        """Finished rows of the same key (study, tier, knobs, variant and seed; for a stage its
        name and what it depends on) that any session computed (not adopted), newest first (by
        finish time, then row id): the order in which `--reuse` tries them. Whether one may be
        reused is the caller's check of its inputs.

        Adopted rows are skipped so that `reused_from` always points at the row that computed.
        """
        rows = self.db.execute(
            "SELECT * FROM runs WHERE key = ? AND status = 'done' AND source = 'run'"
            " ORDER BY finished_at DESC, id DESC", (spec.key,)).fetchall()
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

    def runs(self, session: str | None = None, study: str | None = None,
             kind: str = "run") -> list[RunRecord]:
        """Rows of `kind` ("run" or "stage") in insertion order, optionally of one session
        and/or one study."""
        if "kind" not in self._columns(self.db, "runs"):  # a store older than stages
            kind_filter = "1" if kind == "run" else "0"
        else:
            kind_filter = "kind = ?3"
        rows = self.db.execute(
            "SELECT * FROM runs WHERE (?1 IS NULL OR session = ?1) AND (?2 IS NULL OR study = ?2)"
            f" AND {kind_filter} AND ?3 IS NOT NULL ORDER BY id", (session, study, kind)).fetchall()
        return [_record(row) for row in rows]

    def sessions_of(self, ids: Iterable[int]) -> dict[int, str]:
        """Row id -> its session, e.g. for the rows a session reused (their logs are there)."""
        wanted = sorted(set(ids))
        found: dict[int, str] = {}
        for start in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
            chunk = wanted[start:start + 500]
            found.update(self.db.execute(
                f"SELECT id, session FROM runs WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk).fetchall())
        return found

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

    def save_verdicts(self, session: str, verdicts: Sequence[VerdictRow]) -> None:
        """Upsert verdict rows by (session, study, tier, knobs, hypothesis).

        SQLite has no NaN: a NaN statistic is stored as NULL and read back as None.
        """
        # the claim in words and its margin go into `detail` (no columns of their own), so
        # that reports can draw a claim's boundary
        rows = [{**v.as_dict(), "detail": {"claim": v.claim, "margin": v.margin,
                                           "alpha": v.alpha, **v.detail}} for v in verdicts]
        names = ", ".join(_VERDICT_FIELDS)
        updates = ", ".join(f"{name} = excluded.{name}" for name in _VERDICT_FIELDS[5:])
        with self._write() as db:
            db.executemany(
                f"INSERT INTO verdicts ({names}) VALUES ({', '.join('?' * len(_VERDICT_FIELDS))})"
                f" ON CONFLICT (session, study, tier, knobs, hypothesis) DO UPDATE SET {updates}",
                [(session, row["study"], row["tier"], dumps(dict(row["knobs"])),
                  row["hypothesis"], *(dumps(row.get(name) or {}) if name == "detail"
                                       else _plain(row.get(name)) for name in _VERDICT_FIELDS[5:]))
                 for row in rows])

    def verdicts(self, session: str) -> list[dict]:
        """Verdict rows of `session` in first-saved order, `knobs` decoded."""
        rows = self.db.execute(
            "SELECT * FROM verdicts WHERE session = ? ORDER BY rowid", (session,)).fetchall()
        older = {"mean_a": None, "mean_b": None, "baseline": None, "kind": None,
                 "detail": "{}"}  # columns an older store lacks
        return [{**older, **row, "knobs": json.loads(row["knobs"]),
                 "detail": json.loads(row.get("detail") or "{}")} for row in map(dict, rows)]
