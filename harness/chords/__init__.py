"""The chord domain: vocabulary, synthetic data, models, training, decoding and metrics."""
