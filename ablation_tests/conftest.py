"""The chord domain's fixture and its --billboard-root option, for the flagship study. (A
conftest below the rootdir cannot list pytest_plugins, so it takes the hooks by name; the other
studies import their own domain's fixtures in their modules, so each domain loads only for the
studies that use it.)"""

from harness.chords.fixtures import chord_data, pytest_addoption, pytest_sessionstart

__all__ = ["chord_data", "pytest_addoption", "pytest_sessionstart"]
