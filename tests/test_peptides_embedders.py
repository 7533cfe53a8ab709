"""Embedders: shapes, padding, determinism, and what each can and cannot tell apart."""

import numpy as np
import pytest

from harness.peptides.alphabet import AlphabetError, encode
from harness.peptides.data import PeptideData, Peptides
from harness.peptides.descriptors import WIDTH, ctd_table, indistinguishable
from harness.peptides.embedders import ctd, depends_on, depends_on_seed, embed, kmer
from harness.peptides.synthetic import SyntheticConfig, make_dataset

SMALL = SyntheticConfig(n_train=40, n_eval=20, n_pretrain=60)
ENCODER = {"encoder": {"width": 8, "steps": 3, "batch_size": 16}}


def test_encode_pads_cuts_and_refuses_unknown_letters():
    codes, lengths = encode(["ACD", "WWWWWW"], max_len=4)
    assert codes.tolist() == [[1, 2, 3, 0], [19, 19, 19, 19]]
    assert lengths.tolist() == [3, 4]
    with pytest.raises(AlphabetError, match="'X'"):
        encode(["ACXD"], max_len=4)


def test_ctd_classes_one_per_property_and_its_blind_spots():
    table = ctd_table()
    assert table.shape == (21, WIDTH) and table[0].sum() == 0
    assert (table[1:].sum(axis=1) == 7).all()
    assert indistinguishable() == ["FW", "IV", "KR"]


def test_kmer_window_is_the_residue_and_its_neighbours():
    codes, _ = encode(["ACD"], max_len=4)
    x = kmer(codes, k=3)
    assert x.shape == (1, 4, 60) and x.dtype == np.uint8
    # position 1 (C): A on the left, C itself, D on the right
    assert np.flatnonzero(x[0, 1]).tolist() == [0, 20 + 1, 40 + 2]
    assert np.flatnonzero(x[0, 0]).tolist() == [20 + 0, 40 + 1]  # nothing left of A
    assert x[0, 3].sum() == 0  # padding
    with pytest.raises(ValueError, match="odd"):
        kmer(codes, k=2)


def test_ctd_cannot_tell_a_motif_from_its_decoy_but_kmer_can():
    codes, _ = encode(["KIFR", "RVWK"], max_len=4)
    assert np.array_equal(ctd(codes)[0], ctd(codes)[1])
    assert not np.array_equal(kmer(codes)[0], kmer(codes)[1])


@pytest.mark.parametrize(("name", "width", "dtype"), [("ctd", 21, np.uint8),
                                                      ("kmer", 60, np.uint8),
                                                      ("encoder", 8, np.float16)])
def test_embed_shapes_and_determinism(name, width, dtype):
    data = make_dataset(SMALL, seed=2)
    fit, _ = data.held_out(0.25)
    a = embed(name, data, fit_rows=fit, seed=5, options=ENCODER)
    b = embed(name, data, fit_rows=fit, seed=5, options=ENCODER)
    assert a["train"].shape == (40, SMALL.max_len, width) and a["train"].dtype == dtype
    assert a["eval"].shape == (20, SMALL.max_len, width)
    for part in ("train", "eval"):
        np.testing.assert_array_equal(a[part], b[part])
    _, lengths = data.eval.codes(data.max_len)
    for row, length in enumerate(lengths):
        assert not a["eval"][row, length:].any()


def test_encoder_depends_on_its_seed_and_learns_from_fit_rows_without_a_corpus():
    data = make_dataset(SMALL, seed=2)
    fit, _ = data.held_out(0.25)
    one = embed("encoder", data, fit_rows=fit, seed=1, options=ENCODER)["eval"]
    other = embed("encoder", data, fit_rows=fit, seed=2, options=ENCODER)["eval"]
    assert not np.array_equal(one, other)
    no_corpus = PeptideData(data.train, data.eval, data.max_len, seeded=False)
    assert embed("encoder", no_corpus, fit_rows=fit, seed=1, options=ENCODER)["eval"].shape \
        == one.shape


def test_which_embeddings_need_a_seed():
    real_like = PeptideData(Peptides(("AC",), np.array([1])), Peptides(("CA",), np.array([0])),
                            max_len=4, seeded=False)
    assert not depends_on_seed("kmer", real_like)
    assert depends_on_seed("encoder", real_like)
    assert depends_on_seed("ctd", make_dataset(SMALL, seed=0))
    with pytest.raises(ValueError, match="unknown embedder"):
        depends_on_seed("esm2", real_like)


def test_each_embedder_names_the_config_it_depends_on():
    assert depends_on("ctd") == ["embedder", "data"]
    assert depends_on("kmer") == ["embedder", "data", "embed/k"]
    assert "embed/encoder" in depends_on("encoder")
