"""`python -m harness.launch status [--store PATH]`: collect what detached jobs finished.

Stores the results waiting in the spool beside the store (each into the session that
submitted it, where `pytest ... --reuse` adopts it), fails the runs whose jobs ended without
one, and lists the jobs still queued or running; exit code 0 when none is out, 3 while some
are. Without --store it is the store a pytest session started here would use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.core import inifile
from harness.core.store import Store, StoreError
from harness.launch.controller import Controller, alive

STILL_OUT = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.launch",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["status"])
    parser.add_argument("--store", help="the results store (default: the ini's)")
    args = parser.parse_args(argv)
    try:
        path = Path(args.store) if args.store else inifile.store_path()
        with Store(path) as store:
            if not store.exists():
                print(f"no results store at {path}: nothing was launched from here")
                return 0
            still = Controller(store, path.parent / "spool", "", None).earlier(alive)
    except (StoreError, inifile.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in still:
        print(f"still out: {line}")
    print(f"{len(still)} runs still queued or running" if still else
          "every launched run is in: `pytest ... --reuse` decides the hypotheses")
    return STILL_OUT if still else 0


if __name__ == "__main__":
    sys.exit(main())
