"""The text-to-sign domain: a synthetic lexicon, a pretrained text encoder, a pose decoder,
EMA of weights, training with checkpoints, and pose-error metrics."""
