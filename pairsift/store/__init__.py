"""The LanceDB store: schemas, content-hash ids, keyed compare-and-swap writes, versions and tags."""

from .ids import content_id, id_keys, pair_id, prompt_id, response_id
from .schema import CORE_TABLES, PAIRS, PROMPTS, RESPONSES, SCHEMA_VERSION
from .store import Store, dumps_meta, open_store, read_batches
from .writer import Added, TableStage, Writer

__all__ = [
    "CORE_TABLES",
    "PAIRS",
    "PROMPTS",
    "RESPONSES",
    "SCHEMA_VERSION",
    "Added",
    "Store",
    "TableStage",
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
