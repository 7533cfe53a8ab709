"""Studies declared in YAML: `load_study("study.yaml")` gives the Study that `ablation(...)`
and its `expect(...)` calls would declare, so a study's variants, seeds, tiers and claims can
live in a config file and its body in Python:

    # ablation_tests/tinycnn.yaml
    seeds: 5
    metric: val/acc                       # the claims' metric unless one names its own
    base: {width: 8, depth: 2, lr: 0.02}  # every config key, with its default
    variants:
      base: {}
      narrow: {width: 2}
    tiers: {synthetic: {}, real: {}}
    tier_config: {real: {lr: 0.01}}
    expect:
      - base > narrow
      - {claim: base > narrow, metric: val/loss, margin: 0.1, name: loss_claim}

    # ablation_tests/test_tinycnn.py
    study = load_study("tinycnn.yaml")    # relative to this module's folder

    @study
    def test_tinycnn(run): ...

The keys are `ablation()`'s keywords (variants, seeds, tiers, base, tier_config, name,
correction, tables, minimize, code, opt_in, tier_seeds), plus the claims as lists: `expect` (a
string "a > b", or a mapping with claim, metric, margin, alpha, test, name, variants, tiers),
`trend`, `best` and `guard` (mappings of the keywords of `Study.trend`, `Study.best`,
`Study.guard`), and `metric`, the claims' default metric. A tier is a grid (knob: [values]) or
a one-at-a-time sweep (`{sweep: {knob: [values]}, base: {knob: value}}`).

`base` is the schema of the config: when a study has one, every key that a variant, a tier's
config or a knob sets must be a key of `base` (nested keys too), and its value must have the
base value's type (an int where a float is fine; a `null` in base takes anything). A misspelt
key in a variant would otherwise be a variant that silently changes nothing.

Every error is a StudyError naming the file, the line, the key path and the fix, e.g.
`study.yaml:7: variants.wide.width: expected an int (like base.width), got 'sixteen'`. Unknown
keys get a did-you-mean; duplicate keys (which YAML parsers silently collapse) and numbers YAML
reads as text (`1e-3`: YAML 1.1 floats need a dot) are errors. The Study and its claims point
at their YAML lines, so a failing claim's item shows where it was declared.

Loading is a declaration, not a run input: the file is read at collection, when reads are not
recorded, and what it declares reaches each run through its config (docs/architecture.md, "Run
inputs"): editing one variant in the YAML retrains that variant under `--reuse`; adding a claim
retrains nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from harness.core.study import BUDGET_KEYS, Study, StudyError, Sweep

if TYPE_CHECKING:  # PyYAML is an extra (pytest-ablation[yaml]), imported when a file is read
    import yaml

Path = tuple[Any, ...]  # a key path: ("variants", "wide", "width"), ("expect", 2, "margin")

STUDY_KEYS = ("variants", "seeds", "tiers", "base", "tier_config", "name", "correction",
              "tables", "minimize", "code", "opt_in", "tier_seeds", "metric", "expect", "trend",
              "best", "guard")
CLAIM_KEYS: dict[str, tuple[str, ...]] = {
    "expect": ("claim", "metric", "margin", "alpha", "test", "name", "variants", "tiers"),
    "trend": ("knob", "metric", "direction", "alpha", "variants", "name", "tiers"),
    "best": ("knob", "metric", "expect", "alpha", "test", "variants", "name", "tiers"),
    "guard": ("metric", "margin", "alpha", "test", "variants"),
}
REQUIRED = {"expect": "claim", "trend": "knob", "best": "knob", "guard": "margin"}
# YAML 1.1 (PyYAML) reads 1e-3 and 1.0e3 as strings: its floats need a dot and a signed
# exponent (1.0e-3, 1.0e+3)
_TEXT_FLOAT = re.compile(r"^[-+]?(\d[\d_]*(\.\d*)?|\.\d+)[eE][-+]?\d+$")
_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int": ("an int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "mapping": ("a mapping", lambda v: isinstance(v, dict)),
}


def load_study(path: str | os.PathLike[str]) -> Study:
    """The Study a YAML file declares (see the module docstring for the keys).

    A relative path is taken from the folder of the module that calls `load_study` (pytest
    does not fix the working directory), so a study module and its YAML sit side by side.
    """
    path = os.fspath(path)
    if not os.path.isabs(path):
        caller = sys._getframe(1).f_code.co_filename
        folder = os.path.dirname(caller) if os.path.isfile(caller) else os.getcwd()
        path = os.path.join(folder, path)
    path = os.path.abspath(path)
    try:
        import yaml  # noqa: F401
    except ImportError:
        raise StudyError(f"{path}: a study declared in YAML needs PyYAML: pip install "
                         "'pytest-ablation[yaml]'") from None
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise StudyError(f"{path}: cannot read the study file: {exc.strerror or exc} (a "
                         "relative path is taken from the folder of the module that calls "
                         "load_study)") from None
    study = _Loader(path, text).study()
    study.module = sys._getframe(1).f_code.co_filename  # the module that declares it
    return study


def _show(value: Any) -> str:
    """A value as the YAML author wrote it: 'sixteen', 0.5, true, null, [1, 2]."""
    import yaml

    if isinstance(value, str):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip() \
        .removesuffix("...").strip()


def _dotted(keys: Path) -> str:
    out = ""
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            text = str(key) if re.fullmatch(r"[\w\-/]+", str(key)) else repr(str(key))
            out += f".{text}" if out else text
    return out or "(top level)"


class _Loader:
    """One YAML file: its data, the line of every key path, and the checks that read them."""

    def __init__(self, path: str, text: str):
        import yaml

        self.path = path
        self.lines: dict[Path, int] = {}
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                self._scan(node, ())
            self.data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = f":{mark.line + 1}" if mark else ""
            problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            raise StudyError(f"{path}{line}: not valid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise StudyError(f"{path}: not valid YAML: {exc}") from None
        finally:
            loader.dispose()

    # -- lines and the checks made on the node tree -----------------------------------------

    def _scan(self, node: yaml.Node, keys: Path) -> None:
        """Record each key path's line; refuse duplicate keys and floats read as text."""
        import yaml

        self.lines.setdefault(keys, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor`: its keys are checked where the anchor is
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen:
                    self.fail((*keys, key), f"duplicate key (also on line {seen[key]}); YAML "
                              "keeps only the last one, so remove or rename one", line)
                seen[key] = line
                self.lines[(*keys, key)] = line
                self._scan(value_node, (*keys, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._scan(item, (*keys, i))
        elif (isinstance(node, yaml.ScalarNode) and node.style is None
              and node.tag == "tag:yaml.org,2002:str" and _TEXT_FLOAT.match(node.value)):
            mantissa, exponent = node.value.lower().split("e")
            number = (mantissa if "." in mantissa else f"{mantissa}.0") + "e" + \
                (exponent if exponent[0] in "+-" else f"+{exponent}")
            self.fail(keys, f"{node.value} is read as text, not a number (YAML 1.1 floats need "
                      f"a dot and a signed exponent): write {number}, or quote it if you mean "
                      "text")

    def line(self, keys: Path) -> int | None:
        while keys not in self.lines and keys:
            keys = keys[:-1]
        return self.lines.get(keys)

    def where(self, keys: Path) -> str:
        line = self.line(keys)
        return f"{self.path}:{line}" if line else self.path

    def fail(self, keys: Path, message: str, line: int | None = None) -> NoReturn:
        where = f"{self.path}:{line}" if line else self.where(keys)
        raise StudyError(f"{where}: {_dotted(keys)}: {message}")

    # -- typed access -------------------------------------------------------------------------

    def check(self, value: Any, kind: str, keys: Path, fix: str = "") -> Any:
        """`value` if it is of `kind` (a _KINDS name), else an error naming what it is."""
        words, accepts = _KINDS[kind]
        if not accepts(value):
            self.fail(keys, f"expected {words}, got {_show(value)}" + (f"; {fix}" if fix else ""))
        return value

    def keys_of(self, mapping: Mapping[str, Any], allowed: tuple[str, ...], keys: Path,
                what: str) -> None:
        """Refuse keys of `mapping` outside `allowed`, suggesting the nearest."""
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else \
                    f"{what} takes {', '.join(allowed)}"
                self.fail((*keys, key), f"unknown key {str(key)!r}: {hint}")

    def strings(self, value: Any, keys: Path) -> list[str]:
        for i, item in enumerate(self.check(value, "list", keys)):
            self.check(item, "str", (*keys, i))
        return list(value)

    def conform(self, value: Any, like: Any, keys: Path, like_keys: Path) -> None:
        """`value` (a variant's, tier's or knob's) fits `like`, its base value: same keys,
        same types. Without a base there is nothing to check against."""
        if like is None:
            return
        where = _dotted(like_keys)
        if isinstance(like, dict):
            self.check(value, "mapping", keys, f"{where} is a mapping")
            for key, item in value.items():
                if key not in like:
                    close = difflib.get_close_matches(str(key), [str(k) for k in like], n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    self.fail((*keys, key),
                              f"{str(key)!r} is not a key of {where}: {hint}every config key "
                              f"that variants, tiers or knobs set must be in base, with its "
                              f"default (its keys: {', '.join(map(str, like)) or 'none'})")
                self.conform(item, like[key], (*keys, key), (*like_keys, key))
            return
        kind = ("bool" if isinstance(like, bool) else "int" if isinstance(like, int)
                else "number" if isinstance(like, float) else "str" if isinstance(like, str)
                else "list" if isinstance(like, list) else None)
        if kind is not None:
            words = _KINDS[kind][0]
            if not _KINDS[kind][1](value):
                self.fail(keys, f"expected {words} (like {where}, {_show(like)}), got "
                          f"{_show(value)}")

    # -- the study ------------------------------------------------------------------------------

    def study(self) -> Study:
        data = self.data
        if data is None:
            raise StudyError(f"{self.path}: the file is empty; a study needs at least "
                             "`variants:` (name -> config overrides)")
        self.check(data, "mapping", (), "a study file is a mapping of keys such as variants:, "
                   "seeds:, tiers:")
        self.keys_of(data, STUDY_KEYS, (), "a study")
        if "variants" not in data:
            self.fail((), "no `variants:`; a study needs at least one variant (name -> config "
                      "overrides, e.g. `base: {}`)")
        base = data.get("base")
        if base is not None:
            self.check(base, "mapping", ("base",))
        variants = self.check(data["variants"], "mapping", ("variants",),
                              "write `variants: {name: {key: value}, ...}`")
        for name, overrides in variants.items():
            overrides = {} if overrides is None else overrides  # `narrow:` with nothing after
            variants[name] = overrides
            self.check(overrides, "mapping", ("variants", name),
                       "a variant is a mapping of config overrides (`{}` for none)")
            self.conform(overrides, base, ("variants", name), ("base",))
        options: dict[str, Any] = {"variants": variants}
        if "seeds" in data:
            options["seeds"] = self.seeds(data["seeds"], ("seeds",))
        if "tier_seeds" in data:
            tier_seeds = self.check(data["tier_seeds"], "mapping", ("tier_seeds",))
            options["tier_seeds"] = {tier: self.seeds(value, ("tier_seeds", tier))
                                     for tier, value in tier_seeds.items()}
        if "tiers" in data:
            options["tiers"] = self.tiers(data["tiers"], base)
        if "tier_config" in data:
            tier_config = self.check(data["tier_config"], "mapping", ("tier_config",))
            for tier, config in tier_config.items():
                self.check(config, "mapping", ("tier_config", tier))
                self.conform(config, base, ("tier_config", tier), ("base",))
            options["tier_config"] = tier_config
        if base is not None:
            options["base"] = base
        for key in ("name", "correction"):
            if key in data:
                options[key] = self.check(data[key], "str", (key,))
        for key in ("minimize", "code", "opt_in"):
            if key in data:
                options[key] = self.strings(data[key], (key,))
        if "tables" in data:
            options["tables"] = self.tables(data["tables"])
        study = Study(where=self.where(()), **options)
        metric = self.check(data["metric"], "str", ("metric",)) if "metric" in data else None
        for kind in ("expect", "trend", "best", "guard"):
            for i, item in enumerate(self.check(data.get(kind) or [], "list", (kind,),
                                                f"write `{kind}:` as a list, one claim a line")):
                self.claim(study, kind, item, (kind, i), metric)
        return study

    def seeds(self, seeds: Any, path: Path) -> Any:
        """A count, a list of ints or an adaptive budget ({min: 3, max: 12, batch: 3}),
        checked."""
        if isinstance(seeds, dict):
            self.keys_of(seeds, BUDGET_KEYS, path, "an adaptive seed budget")
            for key, value in seeds.items():
                self.check(value, "int", (*path, key))
        elif not isinstance(seeds, list):
            self.check(seeds, "int", path, "give a count, a list of ints or {min:, max:, batch:}")
        else:
            for i, seed in enumerate(seeds):
                self.check(seed, "int", (*path, i))
        return seeds

    def tiers(self, tiers: Any, base: Mapping[str, Any] | None) -> dict[str, Any]:
        self.check(tiers, "mapping", ("tiers",), "write `tiers: {synthetic: {knob: [values]}}`")
        out: dict[str, Any] = {}
        for tier, knobs in tiers.items():
            at: Path = ("tiers", tier)
            knobs = {} if knobs is None else knobs  # `real:` with no knobs
            self.check(knobs, "mapping", at, "a tier is a mapping of knob: [values], or "
                       "{sweep: {knob: [values]}, base: {knob: value}}")
            if isinstance(knobs.get("sweep"), dict):
                self.keys_of(knobs, ("sweep", "base"), at, "a one-at-a-time tier")
                if "base" not in knobs:
                    self.fail(at, "a sweep needs `base: {knob: value, ...}`, the setting every "
                              "knob is varied around")
                values = knobs["sweep"]
                centre = self.check(knobs["base"], "mapping", (*at, "base"))
                for knob, value in centre.items():
                    self.knob_value(value, knob, (*at, "base", knob), base)
                for knob, listed in values.items():
                    self.knob_values(listed, knob, (*at, "sweep", knob), base)
                out[tier] = Sweep(values, base=centre)
                continue
            for knob, listed in knobs.items():
                self.knob_values(listed, knob, (*at, knob), base)
            out[tier] = knobs
        return out

    def knob_values(self, values: Any, knob: str, keys: Path,
                    base: Mapping[str, Any] | None) -> None:
        self.check(values, "list", keys, f"a knob takes a list of values; for one value write "
                   f"[{_show(values)}]")
        if not values:
            self.fail(keys, "a knob needs at least one value")
        if base is not None:
            like, like_keys = self.knob_base(knob, keys, base)
            for i, value in enumerate(values):
                self.conform(value, like, (*keys, i), like_keys)

    def knob_value(self, value: Any, knob: str, keys: Path,
                   base: Mapping[str, Any] | None) -> None:
        if base is not None:
            like, like_keys = self.knob_base(knob, keys, base)
            self.conform(value, like, keys, like_keys)

    def knob_base(self, knob: str, keys: Path, base: Mapping[str, Any]) -> tuple[Any, Path]:
        """(base value, its key path) of the config key a knob sets; a knob named like a
        path, "model/width", sets a nested key."""
        like: Any = base
        like_keys: Path = ("base",)
        for part in str(knob).split("/"):
            if not isinstance(like, dict) or part not in like:
                options = [str(k) for k in like] if isinstance(like, dict) else []
                close = difflib.get_close_matches(part, options, n=1)
                prefix = "/".join(map(str, like_keys[1:]))
                hint = f"did you mean {(prefix + '/' if prefix else '') + close[0]!r}? " \
                    if close else ""
                self.fail(keys, f"knob {str(knob)!r} is not a key of base: {hint}a knob sets "
                          "a config key, so declare it in base with its default")
            like, like_keys = like[part], (*like_keys, part)
        return like, like_keys

    def tables(self, tables: Any) -> list[str] | dict[str, list[str]]:
        if isinstance(tables, dict):
            return {str(group): self.strings(columns, ("tables", group))
                    for group, columns in tables.items()}
        if not isinstance(tables, list):
            self.fail(("tables",), f"expected a list of metric groups or a mapping of group -> "
                      f"[columns], got {_show(tables)}")
        return self.strings(tables, ("tables",))

    def claim(self, study: Study, kind: str, item: Any, keys: Path, metric: str | None) -> None:
        """Declare one claim through the Study's own method, so it is validated as in Python;
        its errors and its `where` name the YAML line."""
        if kind == "expect" and isinstance(item, str):
            item = {"claim": item}
        self.check(item, "mapping", keys, f"write `{{{', '.join(CLAIM_KEYS[kind][:3])}, ...}}`"
                   + (" or a string 'a > b'" if kind == "expect" else ""))
        self.keys_of(item, CLAIM_KEYS[kind], keys, f"`{kind}`")
        required = REQUIRED[kind]
        if required not in item:
            self.fail(keys, f"`{kind}` needs `{required}:`")
        options = dict(item)
        for key in ("margin", "alpha"):
            if key in options:
                self.check(options[key], "number", (*keys, key))
        for key in ("metric", "name", "test", "direction", "claim", "knob"):
            if key in options:
                self.check(options[key], "str", (*keys, key))
        if "variants" in options:
            options["variants"] = self.strings(options["variants"], (*keys, "variants"))
        if "metric" not in options:
            if metric is None:
                self.fail(keys, "no metric: give this claim `metric:`, or the study a "
                          "default `metric:` at the top level")
            options["metric"] = metric
        where = self.where(keys)
        before = {"expect": (study.hypotheses, study.claims), "trend": (study.claims,),
                  "best": (study.claims,), "guard": (study.guards,)}[kind]
        counts = [len(found) for found in before]
        try:
            if kind == "expect":
                study.expect(options.pop("claim"), **options)
            else:
                getattr(study, kind)(**options)
        except StudyError as exc:  # the Study names this module's line: name the YAML's
            message = re.sub(rf"^{re.escape(__file__)}:\d+: ", "", str(exc))
            raise StudyError(f"{where}: {_dotted(keys)}: {message}") from None
        except TypeError as exc:  # e.g. a keyword the Study method does not take
            self.fail(keys, str(exc))
        for found, count in zip(before, counts, strict=True):
            if len(found) > count:  # point the new declaration at its YAML line
                found[-1] = dataclasses.replace(found[-1], where=where)
