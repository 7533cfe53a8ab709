"""`python -m harness report ...` (see harness.core.report)."""

import sys

from harness.core.report import main

if __name__ == "__main__":
    if sys.argv[1:2] != ["report"]:
        sys.exit("usage: python -m harness report [--store PATH] [--session ID] "
                 "[--format text|md|csv|json] [--table summary|runs|verdicts] [-o FILE] [--list]"
                 "\n       [--html FILE] [--plots DIR] [--smooth W] [--baseline SPEC]"
                 "\n(python -m harness report --help says more)")
    sys.exit(main(sys.argv[2:]))
