"""The antimicrobial-peptide domain: embedders x classifiers, the grid of seed 004.

    data.py         Peptides and PeptideData: sequences, labels, splits by sequence hash
    alphabet.py     the 20 amino acids, padded index arrays
    descriptors.py  Dubchak's CTD property classes per residue (a lossy physico-chemical code)
    synthetic.py    peptides whose activity is set by ordered motifs and a cationic bias
    amp.py          the real tier: modlamp's AMP vs UniProt set, shipped inside its wheel
    embedders.py    per-residue embedders by capacity: ctd < kmer < encoder
    encoder.py      the learned embedder, trained in its stage
    classifiers.py  tiny CNN, BiLSTM and transformer classifiers over per-residue embeddings
    loss.py         the conservative BCE that penalises false positives
    selection.py    which epoch's weights to keep: best held-out precision
    train.py        fit(): deterministic training with precision-based checkpoint selection
    metrics.py      scikit-learn scores: accuracy, precision, recall, F1, ROC-AUC, AP
    fixtures.py     pytest fixtures, imported by the study module

The core never imports this package.
"""
