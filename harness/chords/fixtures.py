"""pytest fixtures of the chord domain, loaded by the root conftest.py.

    @heads
    def test_chord_heads(run, chord_data):
        chord_data.train, chord_data.eval     # songs for this run's tier, knobs and seed

The synthetic tier generates songs from the run's seed and knobs; the real tier reads McGill
Billboard from `--billboard-root` (or the `billboard_root` ini value, or the
ABLATION_BILLBOARD_ROOT environment variable; default ../shared/data/billboard).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

# The chord domain (numpy, scipy, mir_eval) is imported where a fixture first needs it: the root
# conftest loads this module in every process, and an xdist controller, which runs no test,
# would otherwise import it before it starts its workers (0.5-1 s on the critical path).

DEFAULT_BILLBOARD_ROOT = "../shared/data/billboard"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ablation")
    group.addoption("--billboard-root", metavar="DIR",
                    help="McGill Billboard release (bothchroma.csv + full.lab per song) for the "
                         "real tier; also ini billboard_root or env ABLATION_BILLBOARD_ROOT "
                         f"(default {DEFAULT_BILLBOARD_ROOT} from the rootdir)")
    parser.addini("billboard_root", "McGill Billboard data root for the real tier",
                  default=DEFAULT_BILLBOARD_ROOT)


@dataclass(frozen=True, eq=False)
class ChordData:
    """What a run trains and evaluates on, whatever the tier."""

    train: list[Any]
    eval: list[Any]
    feature_dim: int
    notes: dict[str, Any]

    def held_out(self, fraction: float) -> tuple[list[Any], list[Any]]:
        """(fit, validation): `train` split by song id for checkpoint selection. Eval songs are
        never touched, so selecting on validation leaves the reported scores unbiased."""
        from harness.chords import billboard

        by_id = {song.id: song for song in self.train}
        fit, validation = billboard.split(sorted(by_id), eval_fraction=fraction, seed=1)
        return [by_id[i] for i in fit], [by_id[i] for i in validation]


def synthetic_data(config: dict[str, Any], seed: int) -> ChordData:
    """The synthetic dataset of a run: `config["data"]` overrides plus the noise knob."""
    from harness.chords.synthetic import SyntheticConfig, make_dataset

    options = dict(config.get("data", {}))
    if "noise_sigma" in config:
        options["noise_sigma"] = config["noise_sigma"]
    data = make_dataset(SyntheticConfig(**options), seed=seed)
    return ChordData(data.train, data.eval, data.config.feature_dim, {})


@cache
def real_data(root: Path, cache_dir: Path) -> ChordData:
    """Billboard songs split by song id (no song on both sides), cached per process."""
    from harness.chords import billboard
    from harness.chords.vocab import DEFAULT_VOCAB

    songs = {s.id: s for s in billboard.load_billboard(root, DEFAULT_VOCAB, cache_dir=cache_dir)}
    train, evaluation = billboard.split(sorted(songs))
    return ChordData([songs[i] for i in train], [songs[i] for i in evaluation],
                     next(iter(songs.values())).features.shape[1],
                     billboard.mapping_report(songs.values()))


def data_metrics(data: ChordData) -> dict[str, float]:
    """What the data itself says about a run: the share of frames outside the vocabulary."""
    if "unmapped_share" not in data.notes:
        return {}
    return {"unmapped_share": float(data.notes["unmapped_share"]),
            "frames": float(data.notes["frames"])}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under --real, one clear error up front when the Billboard root is missing or malformed,
    instead of one failure per real run."""
    if session.config.getoption("real"):
        from harness.chords import billboard

        try:
            billboard.find_songs(billboard_root(session.config))
        except billboard.DataError as exc:
            raise pytest.UsageError(f"--real: {exc}") from None


def billboard_root(config: pytest.Config) -> Path:
    value = (config.getoption("billboard_root") or os.environ.get("ABLATION_BILLBOARD_ROOT")
             or config.getini("billboard_root"))
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else config.rootpath / path


@pytest.fixture
def chord_data(ablation_run: Any, request: pytest.FixtureRequest) -> ChordData:
    """Train and eval songs for the run: synthetic from its seed and knobs, or real."""
    if ablation_run.tier == "real":
        cache_dir = request.config.rootpath / ".ablation" / "cache" / "billboard"
        return real_data(billboard_root(request.config).resolve(), cache_dir)
    return synthetic_data(dict(ablation_run.config), ablation_run.seed)
