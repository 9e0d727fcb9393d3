"""Run one `pairsift` command in this process, starting at a given wall-clock time.

``python run_cli.py START_EPOCH_SECONDS ARG...``: imports everything first, then waits for
START so that several processes begin their command at the same instant (or staggered).
"""

import sys
import time

if __name__ == "__main__":
    start = float(sys.argv[1])
    import lance  # noqa: F401 - loaded before the start line, not after
    import polars  # noqa: F401

    from pairsift.cli.main import main

    while time.time() < start:
        time.sleep(0.001)
    sys.argv = ["pairsift", *sys.argv[2:]]
    main()
