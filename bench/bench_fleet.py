"""Fleet simulation (issue 16): events x second-chance mechanisms on a warm fleet, and the Maglev
resilience curve beside the paper's; markdown on stdout.  The simulator is ``fleetsim``
(``python -m fleetsim --help``); this runs it with the full-size defaults (64 gateways x 1,000
backends x 1,000,000 connections).  Saved output: bench/results/fleetsim.md.

Run:  .venv/bin/python bench/bench_fleet.py [fleetsim options, e.g. --flows 100000]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fleetsim.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
