"""The LanceDB store: schemas, content-hash ids, atomic streaming writes, versions and tags."""

import os

# Lance logs a WARN for every fragment written to a table that does not exist yet (our atomic
# create path). Keep its log to errors unless the user asked for more.
os.environ.setdefault("LANCE_LOG", "error")

from .ids import content_id, id_keys, pair_id, prompt_id, response_id
from .schema import CORE_TABLES, PAIRS, PROMPTS, RESPONSES, SCHEMA_VERSION
from .store import Store, Writer, dumps_meta, open_store, read_batches

__all__ = [
    "CORE_TABLES",
    "PAIRS",
    "PROMPTS",
    "RESPONSES",
    "SCHEMA_VERSION",
    "Store",
    "Writer",
    "content_id",
    "dumps_meta",
    "id_keys",
    "open_store",
    "pair_id",
    "prompt_id",
    "read_batches",
    "response_id",
]
