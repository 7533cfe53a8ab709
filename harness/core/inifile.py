"""The results store a pytest run from a folder would use, found without importing pytest.

pytest's rule (its `locate_config`, for a run without path arguments): walk up from the
folder; in each one, the first of pytest.toml, .pytest.toml, pytest.ini, .pytest.ini (these
count even without a pytest section), pyproject.toml with [tool.pytest] or
[tool.pytest.ini_options], tox.ini with [pytest], setup.cfg with [tool:pytest] is the
configuration, and its folder the rootdir. Without one, the rootdir is the first folder up
holding a pyproject.toml, else one holding a setup.py, else the folder itself. The plugin puts
the store at the `ablation_store` ini value (default .ablation/results.sqlite) under the rootdir.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import iniconfig  # pytest's own ini parser (a dependency of pytest)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before 3.11
    import tomli as tomllib

DEFAULT_STORE = ".ablation/results.sqlite"


class ConfigError(ValueError):
    """A configuration file pytest would read cannot be read."""


def _ini_section(section: str, always: bool = False) -> Callable[[Path], Mapping | None]:
    """A reader of an ini file's `section`; `always`: the file counts even without it."""

    def read(path: Path) -> Mapping | None:
        ini = iniconfig.IniConfig(str(path))
        if section in ini:
            return dict(ini[section].items())
        return {} if always else None

    return read


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _pytest_toml(path: Path) -> Mapping:
    return _toml(path).get("pytest", {})


def _pyproject(path: Path) -> Mapping | None:
    tool = _toml(path).get("tool", {}).get("pytest")
    if tool is None:
        return None
    native = {k: v for k, v in tool.items() if k != "ini_options"}  # pytest 9's [tool.pytest]
    return native or tool.get("ini_options")


# What pytest looks for in each folder, in its order of precedence.
CONFIG_FILES: dict[str, Callable[[Path], Mapping | None]] = {
    "pytest.toml": _pytest_toml,
    ".pytest.toml": _pytest_toml,
    "pytest.ini": _ini_section("pytest", always=True),
    ".pytest.ini": _ini_section("pytest", always=True),
    "pyproject.toml": _pyproject,
    "tox.ini": _ini_section("pytest"),
    "setup.cfg": _ini_section("tool:pytest"),
}


def locate(folder: Path) -> tuple[Path, Path | None, Mapping]:
    """(rootdir, configuration file or None, its pytest options) as pytest finds them."""
    folder = folder.absolute()
    pyproject = None
    for base in (folder, *folder.parents):
        for name, read in CONFIG_FILES.items():
            path = base / name
            if path.is_file():
                try:
                    options = read(path)
                except (OSError, UnicodeDecodeError, iniconfig.ParseError,
                        tomllib.TOMLDecodeError) as exc:
                    raise ConfigError(f"pytest configuration {path} cannot be read: {exc}") \
                        from exc
                if options is not None:
                    return base, path, options
                if name == "pyproject.toml" and pyproject is None:
                    pyproject = path
    if pyproject is not None:
        return pyproject.parent, pyproject, {}
    setup = next((base for base in (folder, *folder.parents) if (base / "setup.py").is_file()),
                 folder)
    return setup, None, {}


def store_path(folder: Path | None = None) -> Path:
    """The store a pytest session started in `folder` (default: the current one) writes."""
    rootdir, _, options = locate(Path.cwd() if folder is None else folder)
    path = Path(os.path.expanduser(str(options.get("ablation_store") or DEFAULT_STORE)))
    return path if path.is_absolute() else rootdir / path
