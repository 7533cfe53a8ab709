"""Safe file names from what users write: study names, run ids, knob values.

Every folder and file the harness creates for a run is built from `component`s: a name that is
already a plain file name is kept (readable), anything else is cleaned and suffixed with a hash
of the original, so `a/b` and `a_b` never share a folder, `../..` never leaves it, and a long
model name stays under file-name limits.

    component("noise=0.5")          # 'noise=0.5'
    component("facebook/opt-125m")  # 'facebook_opt-125m-8139fc6d'
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MAX_LENGTH = 80
_PLAIN = re.compile(r"[A-Za-z0-9_=+-][A-Za-z0-9_.=+-]*")


def component(text: str) -> str:
    """One path component for `text`: itself when plain, else cleaned plus a hash of it."""
    if _PLAIN.fullmatch(text) and len(text) <= MAX_LENGTH:
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("._")[:MAX_LENGTH - 9] or "_"
    return f"{cleaned}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def inside(base: Path, *parts: str, suffix: str = "") -> Path:
    """`base / component(part) / ...` (+ `suffix` on the last), checked to stay in `base`."""
    path = base.joinpath(*(component(part) for part in parts))
    path = path.with_name(path.name + suffix) if suffix else path
    if not path.resolve().is_relative_to(base.resolve()):
        raise ValueError(f"{path} would lie outside {base}")
    return path
