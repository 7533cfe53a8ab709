"""Root conftest: loads the chord domain's fixtures for the studies in ablation_tests/."""

pytest_plugins = ["harness.chords.fixtures"]
