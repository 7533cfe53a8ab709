"""The Billboard loader: real songs from shared/data, error and cache cases on tiny files."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import mir_eval.util
import numpy as np
import pytest

from harness.chords import billboard
from harness.chords.billboard import DataError, RealSong
from harness.chords.vocab import DEFAULT_VOCAB

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "billboard"
needs_data = pytest.mark.skipif(
    not (DATA / billboard.CHROMA_DIR).is_dir(),
    reason=f"the Billboard subset is not at {DATA} (see shared/data/README.md)",
)
HOP = 2048 / 44100  # Chordino's frame hop


def write_song(root: Path, song_id: str, lab: str, frames: int = 40, step: float = 0.1) -> None:
    """A song in the release's layout: ``frames`` chroma rows ``step`` s apart, and ``lab``."""
    rows = np.random.default_rng(int(song_id)).random((frames, billboard.CHROMA_DIM))
    lines = [
        ("/tmp/audio.wav" if i == 0 else "") + f",{i * step:.9f}," + ",".join(f"{v:g}" for v in row)
        for i, row in enumerate(rows)
    ]
    for sub, name, text in (
        (billboard.CHROMA_DIR, billboard.CHROMA_FILE, "\n".join(lines) + "\n"),
        (billboard.LAB_DIR, billboard.LAB_FILE, lab),
    ):
        (root / sub / song_id).mkdir(parents=True, exist_ok=True)
        (root / sub / song_id / name).write_text(text)


LAB = "0.0\t1.0\tC:maj\n1.0\t1.5\tX\n1.5\t2.0\tC:maj(9)\n2.0\t3.0\tA:min7/b7\n3.0\t3.5\tC:bogus\n\n"
C, A_MIN7 = DEFAULT_VOCAB.index("C:maj"), DEFAULT_VOCAB.index("A:min7")


@pytest.fixture(scope="module")
def real_songs() -> list[RealSong]:
    return billboard.load_billboard(DATA, DEFAULT_VOCAB, cache_dir=None, songs=["0003", "0018"])


@needs_data
def test_find_songs_lists_the_subset():
    songs = billboard.find_songs(DATA)
    assert len(songs) == 100 and songs == sorted(songs) and songs[0] == "0003"


@needs_data
def test_real_song_shapes(real_songs):
    for song in real_songs:
        frames = len(song.times)
        assert song.features.shape == (frames, 24) and song.features.dtype == np.float32
        assert song.frames.shape == (frames,) and song.frames.dtype == np.int64
        assert song.frame_rate == pytest.approx(1 / HOP)
        np.testing.assert_allclose(song.times, np.arange(frames) * HOP, atol=1e-6)
        assert song.sequence.dtype == np.int64 and np.all(song.sequence[1:] != song.sequence[:-1])
        assert song.intervals.shape == (len(song.sequence), 2)
        assert np.all(song.intervals[:, 1] > song.intervals[:, 0])
        assert np.all(song.intervals[1:, 0] >= song.intervals[:-1, 1])
        assert len(song.ref_labels) == len(song.ref_intervals) > 50


@needs_data
def test_frame_labels_are_the_lab_sampled_at_frame_times(real_songs):
    for song in real_songs:
        lab = DATA / billboard.LAB_DIR / song.id / billboard.LAB_FILE
        rows = [line.split("\t") for line in lab.read_text().splitlines() if line]
        intervals = np.array([[float(start), float(end)] for start, end, _ in rows])
        labels = [label for _, _, label in rows]
        ref_intervals, ref_labels = song.reference()
        # the .lab times, with rounding overlaps (~1e-13 s) snapped so mir_eval accepts them
        np.testing.assert_allclose(ref_intervals, intervals, rtol=0, atol=1e-9)
        assert np.all(ref_intervals[1:, 0] >= ref_intervals[:-1, 1])
        assert ref_labels == labels
        sampled = mir_eval.util.interpolate_intervals(intervals, labels, song.times, "X")
        expected = [DEFAULT_VOCAB.reduce(label) for label in sampled]
        np.testing.assert_array_equal(song.frames, [-1 if c is None else c for c in expected])
        mapped = song.frames[song.frames >= 0]
        assert song.sequence.tolist() == [c for c, _ in itertools.groupby(mapped.tolist())]


@needs_data
def test_reference_keeps_the_original_labels_and_can_transpose(real_songs):
    _, labels = real_songs[0].reference(shift=2)
    assert labels[:6] == ["N", "N", "N", "B:min", "B:min", "D:maj"]  # 0003 starts N N N A:min ...
    assert billboard._transpose("Bb:min7/b3", 3) == "C#:min7/b3"


@needs_data
def test_mapping_counts_add_up(real_songs):
    for song in real_songs:
        assert sum(song.reductions.values()) + sum(song.unmapped.values()) == len(song.frames)
        assert sum(song.unmapped.values()) == np.sum(song.frames == -1)
    report = billboard.mapping_report(real_songs)
    assert report["frames"] == sum(len(s.frames) for s in real_songs)
    assert report["unmapped_share"] == pytest.approx(report["unmapped_frames"] / report["frames"])
    assert report["reductions"]["maj -> maj"] > report["reductions"]["min -> min"] > 0


@needs_data
def test_cache_gives_the_parsed_arrays_bitwise(tmp_path, real_songs):
    cached = [billboard.load_song(DATA, "0003", cache_dir=tmp_path) for _ in range(2)]
    for song in cached:
        np.testing.assert_array_equal(song.features, real_songs[0].features)
        np.testing.assert_array_equal(song.times, real_songs[0].times)
        np.testing.assert_array_equal(song.frames, real_songs[0].frames)


def test_labels_counts_and_sequence_of_a_tiny_song(tmp_path):
    write_song(tmp_path, "0001", LAB)  # 40 frames, 0.1 s apart; the lab stops at 3.5 s
    song = billboard.load_song(tmp_path, "0001", DEFAULT_VOCAB)
    expected = [C] * 10 + [-1] * 5 + [C] * 5 + [A_MIN7] * 10 + [-1] * 10
    assert song.frames.tolist() == expected
    assert song.sequence.tolist() == [C, A_MIN7]  # C on both sides of the X: one segment
    np.testing.assert_allclose(song.intervals, [[0.0, 2.0], [2.0, 3.0]])
    assert song.reductions == {"maj -> maj": 10, "maj(9) -> maj": 5, "min7/b7 -> min7": 10}
    assert song.unmapped == {"X": 5, "invalid": 5, "unannotated": 5}
    assert song.ref_labels == ["C:maj", "X", "C:maj(9)", "A:min7/b7", "X"]
    lab = tmp_path / billboard.LAB_DIR / "0001" / billboard.LAB_FILE
    assert len(song.issues) == 1 and song.issues[0].startswith(f"{lab}:5: 'C:bogus'")
    report = billboard.mapping_report([song, song])
    assert report["unmapped_frames"] == 30 and report["unmapped_share"] == 0.375
    assert report["issues"] == song.issues * 2


def test_an_all_x_song_has_no_segments(tmp_path):
    write_song(tmp_path, "0001", "0\t4\tX\n")
    song = billboard.load_song(tmp_path, "0001", DEFAULT_VOCAB)
    assert song.sequence.shape == (0,) and song.intervals.shape == (0, 2)


def test_split_is_deterministic_disjoint_and_stable():
    ids = [f"{i:04d}" for i in range(100)]
    train, evaluation = billboard.split(ids)
    assert (train, evaluation) == billboard.split(list(reversed(ids)))
    assert not set(train) & set(evaluation) and sorted(train + evaluation) == ids
    assert 10 <= len(evaluation) <= 30
    _, more_eval = billboard.split([f"{i:04d}" for i in range(300)])
    assert set(more_eval) & set(ids) == set(evaluation)  # adding songs moves none across
    assert billboard.split(ids, seed=1) != (train, evaluation)
    with pytest.raises(ValueError, match="eval_fraction"):
        billboard.split(ids, eval_fraction=1.0)
    with pytest.raises(ValueError, match="empty"):
        billboard.split(["0001"])


def test_second_load_reads_the_cache_and_a_changed_file_is_parsed_again(tmp_path, monkeypatch):
    root, cache = tmp_path / "data", tmp_path / "cache"
    write_song(root, "0001", LAB)
    first = billboard.load_song(root, "0001", cache_dir=cache)
    assert [p.suffix for p in cache.iterdir()] == [".npz"]  # no temporary file left behind

    parsed = []
    parse = billboard._parse_chroma
    monkeypatch.setattr(billboard, "_parse_chroma", lambda *a: parsed.append(a) or parse(*a))
    second = billboard.load_song(root, "0001", cache_dir=cache)
    assert parsed == [] and np.array_equal(second.features, first.features)

    csv = root / billboard.CHROMA_DIR / "0001" / billboard.CHROMA_FILE
    lines = csv.read_text().splitlines()
    lines[1] = ",0.100000000," + ",".join(["7"] * 24)
    csv.write_text("\n".join(lines) + "\n")
    changed = billboard.load_song(root, "0001", cache_dir=cache)
    assert len(parsed) == 1 and np.all(changed.features[1] == 7)
    assert len(list(cache.glob("*.npz"))) == 2


def test_missing_root_names_the_path_and_the_options(tmp_path):
    with pytest.raises(DataError) as error:
        billboard.find_songs(tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message
    for option in ("--billboard-root", "ABLATION_BILLBOARD_ROOT", "billboard_root"):
        assert option in message


def test_wrong_layout_and_empty_root(tmp_path):
    (tmp_path / billboard.CHROMA_DIR).mkdir()
    with pytest.raises(DataError, match=billboard.LAB_DIR):
        billboard.find_songs(tmp_path)
    (tmp_path / billboard.LAB_DIR).mkdir()
    with pytest.raises(DataError, match="no song"):
        billboard.find_songs(tmp_path)


def test_a_song_without_chroma_is_skipped_by_find_songs_and_named_by_load_song(tmp_path):
    write_song(tmp_path, "0001", LAB)
    write_song(tmp_path, "0002", LAB)
    chroma = tmp_path / billboard.CHROMA_DIR / "0002" / billboard.CHROMA_FILE
    chroma.unlink()
    assert billboard.find_songs(tmp_path) == ["0001"]
    with pytest.raises(DataError, match=re.escape(f"{chroma} is missing")):
        billboard.load_billboard(tmp_path, DEFAULT_VOCAB, cache_dir=None, songs=["0001", "0002"])


@pytest.mark.parametrize(
    "line, problem",
    [
        ("1.0\t2.0", "expected 3 fields"),
        ("1.0\t2.0\tC:maj\textra", "expected 3 fields"),
        ("one\t2.0\tC:maj", "must be numbers"),
        ("2.0\t1.0\tC:maj", "start <= end"),
        ("0.5\t2.0\tC:maj", "before the previous one ends"),
    ],
)
def test_a_malformed_lab_line_is_named_by_file_and_line(tmp_path, line, problem):
    write_song(tmp_path, "0001", f"0.0\t1.0\tN\n{line}\n")
    lab = tmp_path / billboard.LAB_DIR / "0001" / billboard.LAB_FILE
    with pytest.raises(DataError, match=f"{re.escape(f'{lab}:2: ')}.*{problem}"):
        billboard.load_song(tmp_path, "0001", DEFAULT_VOCAB)


@pytest.mark.parametrize(
    "row, problem",
    [
        (",0.2,1,2", "4 fields instead of 26"),
        (",0.2,x" + ",1" * 23, "non-numeric"),
        (",0.1" + ",1" * 24, "not after the previous"),
    ],
)
def test_a_malformed_chroma_line_is_named_by_file_and_line(tmp_path, row, problem):
    write_song(tmp_path, "0001", LAB)
    csv = tmp_path / billboard.CHROMA_DIR / "0001" / billboard.CHROMA_FILE
    lines = csv.read_text().splitlines()
    lines[2] = row
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{re.escape(f'{csv}:3: ')}.*{problem}"):
        billboard.load_song(tmp_path, "0001", DEFAULT_VOCAB)


@needs_data
def test_mir_eval_accepts_the_real_references(real_songs):
    """.lab times overlap by ~1e-13 s; the reference handed to mir_eval must not."""
    from harness.chords.metrics import score_song

    for song in real_songs:
        intervals, labels = song.reference()
        scores = score_song(intervals, labels, intervals, labels)
        assert scores["majmin"] == pytest.approx(1.0) and scores["seg"] == pytest.approx(1.0)


def test_real_without_data_is_one_clear_usage_error(tmp_path):
    """`pytest ablation_tests --real` with a missing root: one error naming it, no run starts."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    missing = tmp_path / "no-billboard-here"
    proc = subprocess.run([sys.executable, "-m", "pytest", "ablation_tests", "--real",
                           "--billboard-root", str(missing), "-p", "no:cacheprovider",
                           "--ablation-store", str(tmp_path / "s.sqlite")],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert str(missing) in proc.stderr and "--billboard-root" in proc.stderr
