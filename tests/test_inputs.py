"""harness.core.inputs on real files: import closures, declaration masks, hashes, recorded reads."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from harness.core import inputs


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> inputs.Project:
    """A user's project: a package with absolute, relative and lazy imports, and a study."""
    write(tmp_path / "mypkg" / "__init__.py", "")
    write(tmp_path / "mypkg" / "train.py", """
        import json
        import numpy
        from . import losses
        from .models import net


        def fit():
            from mypkg.extra import lazy  # imported inside a function: still code it runs
            return lazy
    """)
    write(tmp_path / "mypkg" / "losses.py", "X = 1\n")
    write(tmp_path / "mypkg" / "models" / "__init__.py", "")
    write(tmp_path / "mypkg" / "models" / "net.py", "from mypkg import losses\n")
    write(tmp_path / "mypkg" / "extra" / "__init__.py", "")
    write(tmp_path / "mypkg" / "extra" / "lazy.py", "import os\n")
    write(tmp_path / "mypkg" / "unused.py", "")
    write(tmp_path / "test_study.py", """
        from harness import ablation
        from mypkg.train import fit
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        monkeypatch.delitem(sys.modules, name)
    return inputs.Project(tmp_path)


def labels(project: inputs.Project, files: set[str]) -> list[str]:
    return sorted(project.label(f) for f in files)


def test_closure_follows_the_projects_imports_without_importing(project: inputs.Project):
    found = inputs.closure([os.path.join(project.rootdir, "test_study.py")], project)
    assert labels(project, found) == [
        "mypkg/__init__.py", "mypkg/extra/__init__.py", "mypkg/extra/lazy.py",
        "mypkg/losses.py", "mypkg/models/__init__.py", "mypkg/models/net.py", "mypkg/train.py",
        "test_study.py"]  # not numpy, json, os, nor the framework (harness), nor mypkg/unused
    assert "mypkg" not in sys.modules  # resolved from files, nothing imported


def test_library_and_framework_files_are_not_the_projects(project: inputs.Project):
    assert not project.is_code(os.path.abspath(os.__file__))
    assert not project.is_code(os.path.abspath(pytest.__file__))
    assert not project.is_code(os.path.abspath(inputs.__file__))  # harness/core
    chords = Path(inputs.__file__).parents[1] / "chords" / "model.py"
    assert project.is_code(str(chords))  # a domain is user-level code


def test_framework_sources_read_for_a_stack_trace_are_no_data_of_a_run():
    """torch.manual_seed records a stack trace, which reads the framework's own sources: under
    a rootdir that holds the framework (this repository) they were recorded as data, so an
    edit of harness/items.py retrained every run that seeded torch."""
    harness = Path(inputs.__file__).parents[1]
    project = inputs.Project(harness.parent)
    assert not project.is_data(str(harness / "items.py"))
    assert not project.is_data(str(harness / "core" / "runs.py"))
    assert project.is_data(str(harness / "chords" / "model.py"))


def test_python_files_hash_their_syntax_tree(tmp_path: Path):
    path = write(tmp_path / "m.py", "x = 1\n")
    digest = inputs.content_hash(path)
    write(tmp_path / "m.py", "# a comment\nx  =  1   # same code\n")
    assert inputs.content_hash(path) == digest
    os.utime(path, (0, 0))
    assert inputs.content_hash(path) == digest  # mtime is no content
    write(tmp_path / "m.py", "x = 2\n")
    assert inputs.content_hash(path) != digest
    data = write(tmp_path / "d.yaml", "a: 1\n")
    before = inputs.content_hash(data)
    write(tmp_path / "d.yaml", "a: 1  \n")
    assert inputs.content_hash(data) != before  # other files: every byte counts


STUDY = """
    from harness import ablation

    NOISE = [0.4, 0.5]
    LR = 0.01
    TABLES = {"labels": ["acc"]}


    def variants():
        return {"a": {}, "b": {"lr": LR * 2}}


    study = ablation(variants=variants(), seeds=3, tiers={"s": {"noise": NOISE}}, tables=TABLES)


    @study
    def test_s(run):
        return {"acc": train(run.config, lr=LR)}


    def train(config, lr):
        return lr


    study.expect("b > a", metric="acc")
"""


def test_declarations_and_what_only_they_use_are_masked(tmp_path: Path):
    path = write(tmp_path / "test_s.py", STUDY)
    source = Path(path).read_text().splitlines()
    lines = [source.index(next(s for s in source if s.startswith(p))) + 1
             for p in ("study = ablation", "study.expect")]
    masked = inputs.declaration_mask(path, lines)
    masked_lines = sorted(source[line - 1].split(" ")[0] for line, _ in masked)
    # LR is used by the body: it stays; the decorator is no use of `study`
    assert masked_lines == ["NOISE", "TABLES", "def", "study", "study.expect(\"b"]
    digest = inputs.content_hash(path, masked)
    for old, new in [('"lr": LR * 2', '"lr": LR * 3'), ("[0.4, 0.5]", "[0.4]"),
                     ('study.expect("b > a"', 'study.expect("a < b"')]:
        write(tmp_path / "test_s.py", textwrap.dedent(STUDY).replace(old, new))
        again = inputs.declaration_mask(path, lines)
        assert inputs.content_hash(path, again) == digest, old
    write(tmp_path / "test_s.py", textwrap.dedent(STUDY).replace("return lr", "return 2 * lr"))
    assert inputs.content_hash(path, inputs.declaration_mask(path, lines)) != digest


def test_reads_under_the_rootdir_are_recorded_while_armed(tmp_path: Path):
    data = write(tmp_path / "data" / "a.csv", "1\n")
    hidden = write(tmp_path / ".cache" / "b.csv", "2\n")
    ignored = write(tmp_path / "store" / "c.csv", "3\n")
    outside = write(tmp_path.parent / f"{tmp_path.name}-outside.csv", "4\n")
    output = str(tmp_path / "out.txt")
    log = inputs.ReadLog()
    log.install(inputs.Project(tmp_path, ignore=[tmp_path / "store"]))
    Path(data).read_text()  # not armed: not recorded
    assert log.files() == set()
    with log.recording():
        for path in (data, hidden, ignored, outside):
            Path(path).read_text()
        Path(output).write_text("x")
        Path(output).read_text()  # written by the process: an output, not an input
        with open(os.open(data, os.O_RDONLY), closefd=True) as f:  # os.open is seen too
            f.read()
    assert log.files() == {data}
    log.project = None  # the hook stays installed (hooks cannot be removed): switch it off


def test_why_changed_names_the_file(project: inputs.Project):
    train = os.path.join(project.rootdir, "mypkg", "train.py")
    losses = os.path.join(project.rootdir, "mypkg", "losses.py")
    recorded = inputs.manifest([train, losses], project)
    assert inputs.why_changed(recorded, recorded, project) is None
    assert inputs.why_changed(recorded, {**recorded, "conftest.py": "x"}, project) == \
        "conftest.py is a new input"
    write(Path(losses), "X = 2\n")
    assert inputs.why_changed(recorded, {}, project) == "mypkg/losses.py changed"
    os.remove(train)
    assert inputs.why_changed(recorded, {}, project) == \
        "mypkg/losses.py changed (and 1 more)"
    assert inputs.why_changed({"mypkg/train.py": "x"}, {}, project) == "mypkg/train.py is gone"
    assert inputs.why_changed({}, {}, project).startswith("the stored run has no record")


def test_code_entries_take_every_file_type(project: inputs.Project):
    write(Path(project.rootdir) / "mypkg" / "defaults.yaml", "lr: 1\n")
    write(Path(project.rootdir) / "mypkg" / "__pycache__" / "x.pyc", "")
    files = inputs.package_files("mypkg", project.rootdir)
    assert "mypkg/defaults.yaml" in labels(project, set(files))
    assert not any("__pycache__" in f for f in files)
    assert inputs.package_files("mypkg/defaults.yaml", project.rootdir) == [
        os.path.join(project.rootdir, "mypkg", "defaults.yaml")]
    with pytest.raises(ValueError, match="cannot find module 'nope_not_here'"):
        inputs.package_files("nope_not_here", project.rootdir)
