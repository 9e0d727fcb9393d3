"""A pause point after each step of a multi-commit command, for crash and race tests.

With ``PAIRSIFT_PAUSE_AFTER=<name>`` in the environment, :func:`committed` prints
``paused after <name>`` to stderr and waits: until the process is killed (a test can ``kill -9``
it at exactly that point and check what a crash there leaves), or, when
``PAIRSIFT_RESUME_FILE=<path>`` is set too, until that file exists, and then goes on (a test
can run another job in the gap). Without the variables it does nothing. Store-level commits
have their own hooks (:func:`pairsift.store.commit.committed`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ENV = "PAIRSIFT_PAUSE_AFTER"
RESUME_ENV = "PAIRSIFT_RESUME_FILE"


def committed(name: str) -> None:
    if os.environ.get(ENV) != name:
        return
    sys.stderr.write(f"paused after {name}\n")
    sys.stderr.flush()
    resume = os.environ.get(RESUME_ENV)
    while not (resume and Path(resume).exists()):  # until the test kills us, or says go on
        time.sleep(0.05 if resume else 60)
