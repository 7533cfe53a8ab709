"""What a run depends on, so that `--reuse` never adopts a run made from other inputs.

A run records its inputs as `{file: content hash}`; a later session may adopt it only when its
config is the same and every recorded file still hashes the same. The inputs are:

* **code**: the study's module with its declarations masked (the `ablation(...)` statement,
  `expect(...)` calls and module constants only they use: their effect on a run is its
  config, so editing one variant retrains that variant only), the conftest.py files above it,
  the modules defining the fixtures it uses, and every project module these import,
  transitively. Imports are read from each file's syntax tree (anywhere in the file, lazy
  imports in functions included) and resolved without importing anything;
* **code= entries** of the study: files or packages, every file type;
* **dynamic imports**: project modules first imported while a run computed;
* **data**: files under the rootdir that the process opened for reading while a fixture was
  set up or a run computed (a `sys.addaudithook` on "open"), except hidden folders (the
  store's `.ablation/`, `.git`), `__pycache__`, and files the process wrote.

A project file is any file outside the standard library and site-packages, less the
framework's own modules (`harness/*.py`, `harness/core/`): those are pytest-ablation, not the
user's code. Python files hash their syntax tree, so comments and formatting never retrain.

Reads are recorded process-wide (a file read for one study also guards the runs of another
computed later in the same process): conservative, never stale. Not seen: files read by C code
without Python's `open` and by subprocesses (DataLoader workers); name those in `code=`.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import os
import site
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HASH_SCHEME = "inputs-1"  # bump when hashing changes: stored runs then retrain once
_FRAMEWORK = Path(__file__).resolve().parents[1]  # the harness package
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Project:
    """Which files are the user's: code anywhere outside the interpreter's libraries, data
    under `rootdir`. Paths are labelled relative to the rootdir, so a fresh clone matches."""

    def __init__(self, rootdir: str | os.PathLike, *, ignore: Iterable[str | os.PathLike] = ()):
        self.rootdir = os.path.abspath(rootdir)
        libraries = {sysconfig.get_path(name, vars=vars_) for name in (
            "stdlib", "platstdlib", "purelib", "platlib") for vars_ in (
            None, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix})}
        libraries.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
        libraries.add(site.getusersitepackages())
        self.libraries = sorted(os.path.abspath(p) for p in libraries if p)
        self.ignore = [os.path.abspath(p) for p in ignore]

    def in_libraries(self, path: str) -> bool:
        """Part of the standard library or of an installed package (site-packages)."""
        return any(_under(path, lib) for lib in self.libraries)

    def is_code(self, path: str) -> bool:
        """A module file of the user's (not a library's, not the framework's own)."""
        return not self.in_libraries(path) and not _is_framework(path)

    def is_data(self, path: str) -> bool:
        """A file under the rootdir whose contents a run may depend on (never the framework's
        own sources, which a stack trace may read)."""
        if not _under(path, self.rootdir) or any(_under(path, p) for p in self.ignore) \
                or _is_framework(path):
            return False
        parts = os.path.relpath(path, self.rootdir).split(os.sep)
        return not any(p.startswith(".") or p == "__pycache__" for p in parts) and \
            not path.endswith((".pyc", ".pyo"))

    def label(self, path: str) -> str:
        """`pkg/train.py` under the rootdir, the absolute path elsewhere."""
        if _under(path, self.rootdir):
            return Path(os.path.relpath(path, self.rootdir)).as_posix()
        return path

    def path(self, label: str) -> str:
        return label if os.path.isabs(label) else os.path.join(self.rootdir, label)


def _is_framework(path: str) -> bool:
    parent = os.path.dirname(path)
    return parent == str(_FRAMEWORK) or _under(parent, str(_FRAMEWORK / "core"))


# -- hashing ----------------------------------------------------------------------------------

Mask = frozenset[tuple[int, int]]  # (line, column) of masked top-level statements
_hashes: dict[tuple[str, int, int, Mask], str] = {}


def content_hash(path: str, masked: Mask = frozenset()) -> str:
    """Hash of a file's contents; Python source by its syntax tree, without the `masked`
    top-level statements. Cached per (path, size, mtime) in the process."""
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns, masked)
    if key not in _hashes:
        _hashes[key] = (_source_hash(path, masked) if path.endswith(".py") else None) \
            or _bytes_hash(path)
    return _hashes[key]


def _source_hash(path: str, masked: Mask) -> str | None:
    try:
        with _reads_paused():
            tree = ast.parse(Path(path).read_bytes(), filename=path)
    except (SyntaxError, ValueError):
        return None  # not Python after all: its bytes count
    tree.body = [s for s in tree.body if (s.lineno, s.col_offset) not in masked]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:16]


def _bytes_hash(path: str) -> str:
    digest = hashlib.sha256()
    with _reads_paused(), open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def declaration_mask(path: str, lines: Iterable[int]) -> Mask:
    """The top-level statements of `path` that only declare studies.

    `lines` are where the module's studies and hypotheses were declared. The statement holding
    each (an assignment or an expression, never a def or class) is masked, then, repeatedly,
    module constants, functions and classes that only masked statements use (`NOISE = [...]`
    feeding a tier). Decorating with a study is not a use. A name used anywhere else keeps
    its statement: then editing it retrains the whole study, which is safe.
    """
    try:
        with _reads_paused():
            tree = ast.parse(Path(path).read_bytes(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    wanted = set(lines)
    masked = {id(s) for s in tree.body if isinstance(s, ast.Assign | ast.AnnAssign | ast.Expr)
              and any(s.lineno <= line <= (s.end_lineno or s.lineno) for line in wanted)}
    if not masked:
        return frozenset()
    defined = {id(s): _defines(s) for s in tree.body}
    uses = {id(s): _uses(s) for s in tree.body}
    changed = True
    while changed:
        changed = False
        for s in tree.body:
            names = defined[id(s)]
            if id(s) in masked or not names:
                continue
            users = [t for t in tree.body if t is not s and names & uses[id(t)]]
            if users and all(id(t) in masked for t in users):
                masked.add(id(s))
                changed = True
    return frozenset((s.lineno, s.col_offset) for s in tree.body if id(s) in masked)


def _defines(statement: ast.stmt) -> set[str]:
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {statement.name}
    targets = (statement.targets if isinstance(statement, ast.Assign)
               else [statement.target] if isinstance(statement, ast.AnnAssign) else [])
    if not targets or not all(isinstance(t, ast.Name) for t in targets):
        return set()
    return {t.id for t in targets}  # type: ignore[attr-defined]


def _uses(statement: ast.stmt) -> set[str]:
    """Names a statement reads, leaving out its decorators (`@study` is not a use)."""
    nodes: list[ast.AST] = [statement]
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        nodes = [n for n in ast.iter_child_nodes(statement) if n not in statement.decorator_list]
    return {n.id for node in nodes for n in ast.walk(node)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


# -- imports ----------------------------------------------------------------------------------

_imports: dict[tuple[str, int, int], list[tuple[str, int, tuple[str, ...]]]] = {}


def _import_statements(path: str) -> list[tuple[str, int, tuple[str, ...]]]:
    """(module, level, imported names) of every import statement anywhere in a Python file."""
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _imports:
        found: list[tuple[str, int, tuple[str, ...]]] = []
        try:
            with _reads_paused():
                tree = ast.parse(Path(path).read_bytes(), filename=path)
        except (OSError, SyntaxError, ValueError):
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                found.extend((alias.name, 0, ()) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.append((node.module or "", node.level,
                              tuple(alias.name for alias in node.names)))
        _imports[key] = found
    return _imports[key]


def _spec(fullname: str, locations: list[str] | None) -> Any:
    """The module spec of `fullname`, without importing it (nor, given the parent package's
    `locations`, its parents)."""
    module = sys.modules.get(fullname)
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is not None:
        return spec
    try:
        return (importlib.util.find_spec(fullname) if locations is None
                else importlib.machinery.PathFinder.find_spec(fullname, locations))
    except (ImportError, ValueError, AttributeError):
        return None


def _places(spec: Any) -> list[str]:
    """Where a module lives: its file, or a namespace package's folders."""
    origin = getattr(spec, "origin", None)
    if origin and os.path.isfile(origin):
        return [os.path.abspath(origin)]
    return [os.path.abspath(p) for p in (getattr(spec, "submodule_search_locations", None)
                                          or [])]


def _is_library(name: str, project: Project) -> bool:
    """Whether top-level module `name` is the standard library's, a built-in, an installed
    package's, or cannot be found: none of its files are the project's."""
    places = _places(_spec(name, None))
    return not places or all(project.in_libraries(p) for p in places)


def _find(name: str) -> list[str]:
    """Files executed by `import name` (its packages' __init__ files, then the module), found
    without importing; fewer when part of it cannot be found (an attribute, not a module)."""
    files: list[str] = []
    locations: list[str] | None = None
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        spec = _spec(".".join(parts[:depth]), locations)
        if spec is None:
            return files
        files.extend(p for p in _places(spec) if os.path.isfile(p))
        locations = list(spec.submodule_search_locations or [])
        if not locations:
            return files
    return files


def _relative(path: str, module: str, level: int) -> str | None:
    """The file a relative import names, from the importing file's folder."""
    folder = os.path.dirname(path)
    for _ in range(level - 1):
        folder = os.path.dirname(folder)
    target = os.path.join(folder, *module.split(".")) if module else folder
    for candidate in (target + ".py", os.path.join(target, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def closure(roots: Iterable[str], project: Project) -> set[str]:
    """`roots` and every project file they import, transitively (absolute paths)."""
    seen: set[str] = set()
    todo = [os.path.abspath(r) for r in roots]  # roots count whatever they are
    while todo:
        path = todo.pop()
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        if not path.endswith(".py"):
            continue
        for module, level, names in _import_statements(path):
            if level:
                found = [f for f in (_relative(path, module, level),
                                     *(_relative(path, f"{module}.{n}" if module else n, level)
                                       for n in names)) if f]
            elif _is_library(module.split(".")[0], project):
                continue
            else:
                found = _find(module)
                for name in names:
                    found.extend(_find(f"{module}.{name}") if name != "*" else [])
            todo.extend(f for f in found if f not in seen and project.is_code(f))
    return seen


def package_files(name: str, rootdir: str) -> list[str]:
    """Files behind a `code=` entry: a path (file or folder, relative to the rootdir) or an
    importable module or package (every file of it, whatever its type)."""
    path = name if os.path.isabs(name) else os.path.join(rootdir, name)
    if "/" not in name and os.sep not in name and not os.path.exists(path):
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ValueError(f"code=: cannot find module {name!r}")
        if spec.submodule_search_locations:
            return sorted(f for d in spec.submodule_search_locations for f in _walk(d))
        path = spec.origin or ""
    if os.path.isdir(path):
        return sorted(_walk(path))
    if not os.path.isfile(path):
        raise ValueError(f"code=: no file or folder {path}")
    return [os.path.abspath(path)]


def _walk(folder: str) -> Iterator[str]:
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for file in files:
            if not file.startswith(".") and not file.endswith((".pyc", ".pyo")):
                yield os.path.abspath(os.path.join(parent, file))


# -- reads ------------------------------------------------------------------------------------


class ReadLog:
    """Project data files this process opened for reading while recording (see `recording`).

    One audit hook per process (hooks cannot be removed); it does nothing unless armed.
    """

    def __init__(self) -> None:
        self.project: Project | None = None
        self.read: set[str] = set()
        self.written: set[str] = set()
        self._armed = 0
        self._paused = 0
        self._installed = False

    def install(self, project: Project) -> None:
        self.project = project
        if not self._installed:
            sys.addaudithook(self._hook)
            self._installed = True

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record reads within the block (fixture set-up, a run's compute)."""
        self._armed += 1
        try:
            yield
        finally:
            self._armed -= 1

    def files(self) -> set[str]:
        """Data files read so far and never written by this process."""
        return self.read - self.written

    def _hook(self, event: str, args: tuple) -> None:
        if event != "open" or self.project is None or self._paused:
            return
        path, mode, flags = args
        if path is None or isinstance(path, int):
            return
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) \
            else bool((flags or 0) & _WRITE_FLAGS)
        if not (writes or self._armed):
            return
        path = os.path.abspath(os.fsdecode(path))
        if self.project.is_data(path):
            (self.written if writes else self.read).add(path)


READS = ReadLog()


@contextmanager
def _reads_paused() -> Iterator[None]:
    """The harness's own reads (hashing) are not the run's."""
    READS._paused += 1
    try:
        yield
    finally:
        READS._paused -= 1


def manifest(files: Iterable[str], project: Project,
             masks: Mapping[str, Mask] | None = None) -> dict[str, str]:
    """{label: content hash} of `files` (masked where `masks` says), sorted by label."""
    masks = masks or {}
    out = {project.label(f): content_hash(f, masks.get(f, frozenset())) for f in files
           if os.path.isfile(f)}
    return dict(sorted(out.items()))


def why_changed(recorded: Mapping[str, str], current: Mapping[str, str],
                project: Project) -> str | None:
    """One line naming what differs between a stored run's inputs and today's, or None.

    `current` is today's code manifest (hashed as the run would hash it now); every other
    recorded file is hashed afresh. A file today's code needs that the run never read is a
    change too (a new import, a new conftest.py).
    """
    if not recorded:
        return "the stored run has no record of its inputs (made by an older pytest-ablation)"
    changed = []
    for label, digest in recorded.items():
        now = current.get(label)
        if now is None:
            path = project.path(label)
            now = content_hash(path) if os.path.isfile(path) else None
            if now is None:
                changed.append(f"{label} is gone")
                continue
        if now != digest:
            changed.append(f"{label} changed")
    changed += [f"{label} is a new input" for label in current if label not in recorded]
    if not changed:
        return None
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    return changed[0] + more
