"""pairsift: decide which preference pairs an LLM should be aligned on.

ingest -> store -> features -> selection -> training. The public API is re-exported here;
heavy dependencies (torch, transformers, trl) are imported only by the functions that use them.
"""

from .errors import InvalidRecord, PairsiftError
from .store import Store, open_store

__version__ = "0.1.0"

__all__ = ["InvalidRecord", "PairsiftError", "Store", "__version__", "open_store"]
