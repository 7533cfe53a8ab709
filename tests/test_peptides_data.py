"""Peptide data: synthetic by construction, splits by sequence, the real set's clean-up."""

import numpy as np
import pytest

from harness.peptides.amp import unique_labelled
from harness.peptides.data import Peptides, split_rows
from harness.peptides.fixtures import load_peptides
from harness.peptides.synthetic import SyntheticConfig, make_dataset, twins

SMALL = SyntheticConfig(n_train=200, n_eval=100, n_pretrain=50)


def test_synthetic_is_deterministic_per_seed():
    a, b = make_dataset(SMALL, seed=4), make_dataset(SMALL, seed=4)
    assert a.train.sequences == b.train.sequences and a.eval.sequences == b.eval.sequences
    np.testing.assert_array_equal(a.train.labels, b.train.labels)
    assert make_dataset(SMALL, seed=5).train.sequences != a.train.sequences
    assert (len(a.train), len(a.eval), len(a.pretrain)) == (200, 100, 50)


def test_motifs_and_decoys_are_ctd_twins_planted_by_label():
    data = make_dataset(SyntheticConfig(n_train=300, n_eval=10, label_noise=0.0), seed=1)
    motifs, decoys = data.notes["motifs"], data.notes["decoys"]
    pairs = twins()
    for motif, decoy in zip(motifs, decoys, strict=True):
        assert decoy == "".join(pairs[aa] for aa in motif)
        assert all(m != d for m, d in zip(motif, decoy, strict=True))
    for sequence, label in zip(data.train.sequences, data.train.labels, strict=True):
        planted = motifs if label else decoys
        assert any(p in sequence for p in planted)
        assert SMALL.min_len <= len(sequence) <= SMALL.max_len


def test_label_noise_flips_about_its_share():
    clean = make_dataset(SyntheticConfig(n_train=2000, n_eval=10, label_noise=0.0), seed=3)
    noisy = make_dataset(SyntheticConfig(n_train=2000, n_eval=10, label_noise=0.1), seed=3)
    assert clean.train.sequences == noisy.train.sequences
    assert 0.07 < np.mean(clean.train.labels != noisy.train.labels) < 0.13


def test_actives_are_richer_in_cationic_residues():
    data = make_dataset(SyntheticConfig(n_train=2000, n_eval=10, label_noise=0.0), seed=0)
    share = np.array([sum(aa in "KR" for aa in s) / len(s) for s in data.train.sequences])
    assert share[data.train.labels == 1].mean() > share[data.train.labels == 0].mean()


def test_splits_keep_equal_sequences_together_and_are_stable():
    sequences = ["GLWSK", "KWKLF", "GLWSK", "AAAAK", "KWKLF", "ILPWK"] * 10
    kept, split = split_rows(sequences, 0.4, salt="x:")
    assert sorted([*kept, *split]) == list(range(len(sequences)))
    assert not {sequences[i] for i in kept} & {sequences[i] for i in split}
    again, _ = split_rows([*sequences, "NEWONE"], 0.4, salt="x:")
    assert list(again[:len(kept)]) == list(kept)
    with pytest.raises(ValueError, match="fraction"):
        split_rows(sequences, 1.0, salt="x:")


def test_held_out_rows_come_from_train_only():
    data = make_dataset(SMALL, seed=0)
    fit, validation = data.held_out(0.25)
    assert len(fit) + len(validation) == len(data.train)
    assert 0.15 < len(validation) / len(data.train) < 0.35


def test_unique_labelled_drops_repeats_and_contradictions():
    peptides, notes = unique_labelled(["AAK", "GGK", "AAK", "WWK", "WWK"], [1, 0, 1, 1, 0])
    assert peptides.sequences == ("AAK", "GGK")
    assert peptides.labels.tolist() == [1, 0]
    assert notes == {"rows": 5, "unique": 3, "contradictory": 1}
    with pytest.raises(ValueError, match="labels"):
        Peptides(("A",), np.array([1, 0]))


def test_load_peptides_reads_the_source_and_caches_per_seed():
    config = {"source": "synthetic", "n_train": 20, "n_eval": 10, "n_pretrain": 0}
    assert load_peptides(config, 1) is load_peptides(dict(config), 1)
    assert load_peptides(config, 1).pretrain is None
    with pytest.raises(ValueError, match="unknown peptide source"):
        load_peptides({"source": "uniref"}, 0)
