"""The TinyCNN domain: small image classifiers, their data, training and weight spectra.

One network (`model.TinyCNN`, a few thousand parameters) is built whole from the run's seed by
every variant; width, depth, batch norm and dropout are ablated by switching parts of it off,
so every variant of a seed starts from the same initial weights. Synthetic images are made by
construction (`data.synthetic`); the real tier uses scikit-learn's 8x8 digits, which ship with
the package (no download).
"""
