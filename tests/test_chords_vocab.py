"""Tests of harness.chords.vocab: label <-> class round trips and the reduction of real labels."""

import mir_eval.chord
import pytest

from harness.chords.vocab import DEFAULT_VOCAB, Vocabulary

V = DEFAULT_VOCAB


def test_size_and_layout():
    assert V.size == 61
    assert V.label(0) == "N"
    assert V.label(1) == "C:maj"
    assert V.label(1 + 1 * 5 + 1) == "C#:min"
    assert V.label(60) == "B:maj7"


def test_round_trip_all_classes():
    labels = V.labels(range(V.size))
    assert len(set(labels)) == V.size
    assert [V.index(label) for label in labels] == list(range(V.size))
    assert [V.reduce(label) for label in labels] == list(range(V.size))


@pytest.mark.parametrize(
    ("label", "same_as"),
    [
        ("Db:min7", "C#:min7"),
        ("Bb:7", "A#:7"),
        ("Gb:maj7", "F#:maj7"),
        ("C", "C:maj"),
        ("B#:min", "C:min"),
    ],
)
def test_enharmonics(label, same_as):
    assert V.index(label) == V.index(same_as)


def test_shift_transposes_roots_and_keeps_n():
    assert V.label(V.index("C:min"), shift=1) == "C#:min"
    assert V.label(V.index("B:7"), shift=1) == "C:7"
    assert V.label(V.index("C:maj"), shift=-1) == "B:maj"
    assert V.labels([0, V.index("A:maj7")], shift=12) == ["N", "A:maj7"]
    shifted = V.labels(range(1, V.size), shift=1)
    assert all(a != b for a, b in zip(shifted, V.labels(range(1, V.size)), strict=True))


@pytest.mark.parametrize("label", ["C:maj/3", "C:maj(9)", "C:9", "D:5", "X"])
def test_index_refuses_labels_outside_the_vocabulary(label):
    with pytest.raises(KeyError, match="reduce"):
        V.index(label)


def test_label_refuses_unknown_class():
    with pytest.raises(ValueError, match=r"0\.\.60"):
        V.label(61)


# Billboard-style labels and the class the documented rule maps them to.
REDUCTIONS = [
    ("N", "N"),
    ("A:min7/b7", "A:min7"),
    ("E:min/b3", "E:min"),
    ("C:maj/5", "C:maj"),
    ("C:maj/b7", "C:maj"),  # the bass is not a seventh of the chord
    ("C:maj(9)", "C:maj"),
    ("C:maj6", "C:maj"),
    ("C:aug", "C:maj"),
    ("G:7(#9)", "G:7"),
    ("G:9", "G:7"),
    ("G:11", "G:7"),
    ("G:13", "G:7"),
    ("F:min9", "F:min7"),
    ("F:min11", "F:min7"),
    ("B:hdim7", "B:min7"),
    ("Bb:min6", "A#:min"),
    ("B:dim", "B:min"),
    ("B:dim7", "B:min"),
    ("C:minmaj7", "C:min"),
    ("Eb:maj9", "D#:maj7"),
    ("D:5", "D:maj"),
    ("D:1", "D:maj"),
    ("A:sus4", "A:maj"),
    ("A:sus2", "A:maj"),
    ("C:sus4(b7)", "C:7"),
    ("C:sus4(b7,9)", "C:7"),
    ("Ab:(1,b3,5)", "G#:min"),
]


@pytest.mark.parametrize(("label", "expected"), REDUCTIONS)
def test_reduce(label, expected):
    assert V.label(V.reduce(label)) == expected


def test_reduce_x_is_unmappable():
    assert V.reduce("X") is None


@pytest.mark.parametrize("label", ["H:maj", "C:mjr", "C:maj/", "C:(1,3"])
def test_invalid_labels_raise_mir_eval_exception(label):
    with pytest.raises(mir_eval.chord.InvalidChordException):
        V.reduce(label)
    with pytest.raises(mir_eval.chord.InvalidChordException):
        V.index(label)


def test_triad_vocabulary_falls_back_to_triads():
    triads = Vocabulary(qualities=("maj", "min"))
    assert triads.size == 25
    assert triads.label(triads.reduce("A:min7")) == "A:min"
    assert triads.label(triads.reduce("G:7(#9)")) == "G:maj"
