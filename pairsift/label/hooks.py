"""A pause point after each commit of a multi-commit command, for crash tests.

With ``PAIRSIFT_PAUSE_AFTER=<name>`` in the environment, :func:`committed` prints
``paused after <name>`` to stderr and sleeps, so a test can ``kill -9`` the process at exactly
that point and check what a crash there leaves behind. Without the variable it does nothing.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "PAIRSIFT_PAUSE_AFTER"


def committed(name: str) -> None:
    if os.environ.get(ENV) == name:
        sys.stderr.write(f"paused after {name}\n")
        sys.stderr.flush()
        while True:  # until the test kills us
            time.sleep(60)
