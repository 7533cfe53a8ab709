"""Where the benchmark scripts write: each owns one marked section of docs/benchmarks.md.

A section sits between ``<!-- name -->`` and ``<!-- /name -->``; rewriting it leaves the hand-
written text around it alone, so the docs never carry a measured figure typed by hand.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    """`host: N cores, cpu`, for the line that says where a figure was measured."""
    cpu = platform.processor() or platform.machine()
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}"


def stamp(command: str) -> str:
    """The command, machine, date and Python that produced a section."""
    return (f"`{command}` on {machine()}, {dt.date.today().isoformat()}, "
            f"Python {platform.python_version()}")


def write_section(name: str, body: str) -> str:
    """Replace the section `name` (or append it); returns the block written."""
    block = f"<!-- {name} -->\n{body.strip()}\n<!-- /{name} -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- {name} -->.*?<!-- /{name} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    DOC.write_text(text)
    return block
