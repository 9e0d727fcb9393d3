"""`python -m pairsift.cli ...` (e.g. under `accelerate launch`)."""

import sys

from .main import main

sys.exit(main())
