"""Arrow schemas of the store's tables and the schema version they carry.

Every table pairsift writes has explicit Arrow types and the metadata key
``pairsift.schema_version``; opening a store written by a newer pairsift fails loudly instead of
misreading it. Ids are content hashes (see :mod:`pairsift.store.ids`), so every table is keyed by
a stable string id and re-ingesting the same data adds nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

#: 2: `subsets` and `subset_members` carry the run that wrote them (and subsets a revision);
#: the `pairs` table is keyed by (pair_id, label_source). Older tables are upgraded in place.
SCHEMA_VERSION = 2
VERSION_KEY = b"pairsift.schema_version"

#: Field metadata for content-hash id columns: hex digests barely compress, and Lance's default
#: string compression triples the time to write millions of them.
UNCOMPRESSED = {"lance-encoding:compression": "none"}


def id_field(name: str, nullable: bool = False) -> pa.Field:
    """A content-hash id column (32 hex characters), stored uncompressed."""
    return pa.field(name, pa.string(), nullable=nullable, metadata=UNCOMPRESSED)


#: A chat message, as in TRL's conversational format.
MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)


def with_version(schema: pa.Schema) -> pa.Schema:
    """Stamp a schema with the current schema version."""
    meta = dict(schema.metadata or {})
    meta[VERSION_KEY] = str(SCHEMA_VERSION).encode()
    return schema.with_metadata(meta)


def schema_version(schema: pa.Schema) -> int | None:
    raw = (schema.metadata or {}).get(VERSION_KEY)
    return int(raw) if raw is not None else None


PROMPTS = with_version(
    pa.schema(
        [
            pa.field("prompt_id", pa.string(), nullable=False),
            # The prompt as one string. For chat prompts this is a plain rendering
            # ("role: content" blocks) for display and embedding; `messages` is the source of truth.
            pa.field("text", pa.string(), nullable=False),
            pa.field("messages", MESSAGES),
            pa.field("dataset", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("meta", pa.string()),  # JSON object, or null
        ]
    )
)

RESPONSES = with_version(
    pa.schema(
        [
            pa.field("response_id", pa.string(), nullable=False),
            pa.field("prompt_id", pa.string(), nullable=False),
            # The completion alone (never prompt + completion). Kept verbatim: may be empty or blank.
            pa.field("text", pa.string(), nullable=False),
            pa.field("messages", MESSAGES),  # conversational completions, else null
            pa.field("source", pa.string()),  # generator / model / "human"; null when unknown
            pa.field("score", pa.float64()),  # dataset-provided quality score; higher is better
            pa.field("blank", pa.bool_(), nullable=False),  # empty or whitespace-only text
            pa.field("meta", pa.string()),  # JSON object, or null
        ]
    )
)

PAIRS = with_version(
    pa.schema(
        [
            # Hash of the UNORDERED response pair, so a labelled pair and the same candidate
            # pair built later by `pairsift pairs` share one id.
            pa.field("pair_id", pa.string(), nullable=False),
            pa.field("prompt_id", pa.string(), nullable=False),
            pa.field("chosen_id", pa.string(), nullable=False),
            pa.field("rejected_id", pa.string(), nullable=False),
            pa.field("label_source", pa.string(), nullable=False),  # e.g. "dataset"
            pa.field("meta", pa.string()),
        ]
    )
)

def table_key(name: str) -> tuple[str, ...] | None:
    """The content key of a table: appends keep only rows whose key is not there yet.

    None for tables written by their own protocol (subsets, subset_members: per run).
    """
    if name in _KEYS:
        return _KEYS[name]
    if name.startswith("embeddings_"):
        return ("id",)
    if name.startswith(("logprobs_", "rewards_")):
        return ("response_id",)
    return None


#: The tables `pairsift ingest` writes, in commit order: children before parents, so a reader
#: that sees a prompt also sees its responses and pairs.
CORE_TABLES: dict[str, pa.Schema] = {"responses": RESPONSES, "pairs": PAIRS, "prompts": PROMPTS}

_KEYS = {
    "prompts": ("prompt_id",),
    "responses": ("response_id",),
    # A pair may be labelled by the dataset and, later, by annotators (`label_source`
    # "annotator"): one row per source. Orientation precedence: annotator > dataset > score.
    "pairs": ("pair_id", "label_source"),
    "pair_features": ("pair_id",),
    # One row per label an annotator gave (label_id hashes subset, pair, annotator and round).
    "labels": ("label_id",),
}


# ---- computed per-response values (written by `pairsift embed` / `pairsift score`) ------------
#
# One table per named set, because vector widths and provenance differ per model:
#   embeddings_<set>   keyed by `id` (a response_id, or a prompt_id for --target prompts)
#   logprobs_<name>    keyed by `response_id` (e.g. logprobs_ref, logprobs_policy)
#   rewards_<name>     keyed by `response_id`
# The provenance (model id, revision, dtype, max_length, pooling, EOS, template, ...) is a JSON
# object in the table's schema metadata under PROVENANCE_KEY; it is fixed when the set is created.

PROVENANCE_KEY = b"pairsift.provenance"


def embeddings_schema(dim: int, provenance: dict) -> pa.Schema:
    return _with_provenance(
        pa.schema(
            [
                pa.field("id", pa.string(), nullable=False),
                pa.field("vector", pa.list_(pa.float32(), dim)),  # L2-normalised; null if not embeddable
                pa.field("n_tokens", pa.int32(), nullable=False),
                pa.field("truncated", pa.bool_(), nullable=False),
            ]
        ),
        provenance,
    )


def logprobs_schema(provenance: dict) -> pa.Schema:
    return _with_provenance(
        pa.schema(
            [
                pa.field("response_id", pa.string(), nullable=False),
                pa.field("logp_sum", pa.float64()),  # SUM of response-token log-probs given the prompt
                pa.field("logp_mean", pa.float64()),  # MEAN over response tokens
                pa.field("n_tokens", pa.int32(), nullable=False),  # response tokens scored
                pa.field("token_ids", pa.list_(pa.int32())),  # response token ids (edit distance)
                pa.field("truncated", pa.bool_(), nullable=False),
            ]
        ),
        provenance,
    )


def rewards_schema(provenance: dict) -> pa.Schema:
    return _with_provenance(
        pa.schema(
            [
                pa.field("response_id", pa.string(), nullable=False),
                pa.field("reward", pa.float64()),
                pa.field("truncated", pa.bool_(), nullable=False),
            ]
        ),
        provenance,
    )


def _with_provenance(schema: pa.Schema, provenance: dict) -> pa.Schema:
    meta = {PROVENANCE_KEY: json.dumps(provenance, sort_keys=True).encode()}
    return with_version(schema.with_metadata(meta))


def provenance(schema: pa.Schema) -> dict | None:
    raw = (schema.metadata or {}).get(PROVENANCE_KEY)
    return json.loads(raw) if raw is not None else None


# ---- subsets (written by `pairsift select`, read by `pairsift export` / `train`) ---------------

SUBSETS = with_version(
    pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("strategy", pa.string(), nullable=False),
            pa.field("params", pa.string(), nullable=False),  # JSON: every parameter, seed included
            pa.field("seed", pa.int64()),
            pa.field("store_versions", pa.string(), nullable=False),  # JSON {table: version} read
            pa.field("tag", pa.string(), nullable=False),  # the Lance tag pinning those versions
            pa.field("counts", pa.string(), nullable=False),  # JSON: selected + excluded by reason
            pa.field("labelled", pa.bool_(), nullable=False),  # False: out for annotation
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            # The run whose members this manifest makes visible (null: written before runs), and
            # the manifest's revision: a replace appends revision + 1 (see store/subsets.py).
            pa.field("run", pa.string()),
            pa.field("revision", pa.int64()),
        ]
    )
)

SUBSET_MEMBERS = with_version(
    pa.schema(
        [
            pa.field("subset", pa.string(), nullable=False),
            id_field("pair_id"),
            id_field("prompt_id"),
            pa.field("rank", pa.int64(), nullable=False),  # 0 = first pick
            pa.field("score", pa.float64()),  # the strategy's score for this pick
            # Orientation; null on unlabelled subsets until `pairsift label import`.
            id_field("chosen_id", nullable=True),
            id_field("rejected_id", nullable=True),
            # Where the orientation came from: "dataset", "score", "reward:<rm>", "annotator"; null
            # while unlabelled.
            pa.field("label_source", pa.string()),
            # The unordered pair, always set (a_id < b_id).
            id_field("a_id"),
            id_field("b_id"),
            # The select run that wrote the row; only the run its manifest names is visible.
            pa.field("run", pa.string()),
        ]
    )
)
#: A member row as strategies and `compare` build it: the run is filled in by the store's
#: subset writer (store/subsets.py), which alone decides which run a manifest names.
MEMBER_ROWS = pa.schema([f for f in SUBSET_MEMBERS if f.name != "run"], metadata=SUBSET_MEMBERS.metadata)


# ---- pair features (written by `pairsift pairs`, read by select / query / export) -------------
# The column contract is in docs/ARCHITECTURE.md ("The pair_features table").

PAIR_FEATURES = "pair_features"
FEATURES_META_KEY = b"pairsift.features"

PAIR_FEATURES_FIXED = [
    id_field("pair_id"),
    id_field("prompt_id"),
    id_field("a_id"),
    id_field("b_id"),
    pa.field("source_a", pa.string()),
    pa.field("source_b", pa.string()),
    pa.field("score_a", pa.float64()),
    pa.field("score_b", pa.float64()),
    pa.field("blank_a", pa.bool_(), nullable=False),
    pa.field("blank_b", pa.bool_(), nullable=False),
    pa.field("label", pa.int8()),
    pa.field("label_source", pa.string()),
    pa.field("orientable", pa.bool_(), nullable=False),
    pa.field("tie", pa.bool_(), nullable=False),
    pa.field("score_margin", pa.float64()),
]


@dataclass(frozen=True)
class FeatureSets:
    """Names of the input sets: ``embeddings_<e>``, ``logprobs_<lp>``, ``rewards_<rm>``."""

    embeddings: tuple[str, ...] = ()
    logprobs: tuple[str, ...] = ()
    rewards: tuple[str, ...] = ()

    def tables(self) -> list[str]:
        return (
            [f"embeddings_{e}" for e in self.embeddings]
            + [f"logprobs_{lp}" for lp in self.logprobs]
            + [f"rewards_{rm}" for rm in self.rewards]
        )

    def fields(self) -> list[pa.Field]:
        out = [pa.field(f"cos_{e}", pa.float32()) for e in self.embeddings]
        for lp in self.logprobs:
            out += [
                pa.field(f"edit_{lp}", pa.int32()),
                pa.field(f"edit_norm_{lp}", pa.float32()),
                pa.field(f"dlogp_sum_{lp}", pa.float64()),
                pa.field(f"dlogp_mean_{lp}", pa.float64()),
            ]
        out += [pa.field(f"dreward_{rm}", pa.float64()) for rm in self.rewards]
        return out

    def margins(self) -> list[tuple[str, str]]:
        """(name, column) of each reward margin DCRM can use: the dataset score, then each reward set."""
        return [("score", "score_margin")] + [(rm, f"dreward_{rm}") for rm in self.rewards if rm != "score"]

    def derived(self) -> dict[str, tuple[str, str | None, str | None]]:
        """Stored DCRM columns (docs/METHODS.md §2) -> (margin column, logprobs set, ablation).

        ``dcrm_<r>_<lp>`` full formula; ``dcrm_noedit_<r>_<lp>``, ``dcrm_nologp_<r>_<lp>`` ablations;
        ``dcrm_margin_<r>`` margin only. <r> is "score" (dataset score) or a reward set. Values are for
        the a-over-b orientation; the b-over-a DCRM is the negation (same denominator).
        """
        out: dict[str, tuple[str, str | None, str | None]] = {}
        for r, col in self.margins():
            for lp in self.logprobs:
                out[f"dcrm_{r}_{lp}"] = (col, lp, None)
                out[f"dcrm_noedit_{r}_{lp}"] = (col, lp, "no-edit")
                out[f"dcrm_nologp_{r}_{lp}"] = (col, lp, "no-logp")
            out[f"dcrm_margin_{r}"] = (col, None, "margin-only")
        return out

    def all_fields(self) -> list[pa.Field]:
        return self.fields() + [pa.field(name, pa.float64()) for name in self.derived()]

    def union(self, other: FeatureSets) -> FeatureSets:
        def merge(a, b):
            return tuple(a) + tuple(x for x in b if x not in a)

        return FeatureSets(
            merge(self.embeddings, other.embeddings),
            merge(self.logprobs, other.logprobs),
            merge(self.rewards, other.rewards),
        )

    def minus(self, other: FeatureSets) -> FeatureSets:
        return FeatureSets(
            tuple(x for x in self.embeddings if x not in other.embeddings),
            tuple(x for x in self.logprobs if x not in other.logprobs),
            tuple(x for x in self.rewards if x not in other.rewards),
        )

    def __bool__(self) -> bool:
        return bool(self.embeddings or self.logprobs or self.rewards)


def features_meta(schema: pa.Schema) -> dict:
    """The `pairsift.features` schema metadata of a pair_features table (mode, sets, inputs)."""
    raw = (schema.metadata or {}).get(FEATURES_META_KEY)
    return json.loads(raw) if raw else {}


def meta_sets(meta: dict) -> FeatureSets:
    """The feature sets a pair_features table was built from."""
    s = meta.get("sets", {})
    return FeatureSets(tuple(s.get("embeddings", ())), tuple(s.get("logprobs", ())), tuple(s.get("rewards", ())))


def pair_features_schema(sets: FeatureSets, meta: dict) -> pa.Schema:
    """Fixed columns, one column group per set, the DCRM columns, and `meta` as metadata."""
    schema = pa.schema(PAIR_FEATURES_FIXED + sets.all_fields())
    return with_version(schema).with_metadata(
        {**with_version(schema).metadata, FEATURES_META_KEY: json.dumps(meta, sort_keys=True).encode()}
    )


# ---- annotator labels (written by `pairsift label serve` / `label import`, read by resolve/stats) --
#
# One row per label an annotator gave (the audit log: undone labels stay, marked `undone_at`).
# `label_id` = content hash of (subset, pair_id, annotator, round), so a retried submission or a
# re-imported file maps to the row it already wrote. The key carries Lance's primary-key field
# metadata: with it, concurrent merge-inserts of one new key conflict and retry instead of both
# inserting (measured: without it, 6 processes inserting the same 50 keys left 55 rows).

PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}

#: Annotator choices, in terms of the pair's a_id / b_id (never the screen sides).
LABEL_CHOICES = ("a", "b", "tie", "both_bad", "skip")

LABELS = with_version(
    pa.schema(
        [
            pa.field("label_id", pa.string(), nullable=False, metadata={**UNCOMPRESSED, **PRIMARY_KEY}),
            pa.field("subset", pa.string(), nullable=False),
            id_field("pair_id"),
            pa.field("annotator", pa.string(), nullable=False),
            # 0 for an annotator's first label of a pair; +1 after each undo of it.
            pa.field("round", pa.int32(), nullable=False),
            pa.field("choice", pa.string(), nullable=False),  # one of LABEL_CHOICES
            # Which response was shown on the left ("a" or "b"); null when unknown (imports).
            pa.field("left", pa.string()),
            pa.field("rationale", pa.string()),
            pa.field("seconds", pa.float64()),  # time on the page; null when unknown
            pa.field("origin", pa.string(), nullable=False),  # "web", "file", "argilla", "label-studio"
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("undone_at", pa.timestamp("us", tz="UTC")),  # set by undo; the label no longer counts
        ]
    )
)


# ---- the held-out split (written by `pairsift split`, read by select's candidate pool / compare) --
#
# One row per prompt known when the split was made: `heldout` true for evaluation prompts. The
# split's parameters and the versions it read are JSON in the schema metadata under SPLIT_META_KEY:
# {"seed", "holdout", "method", "created_at" (first made with these parameters), "updated_at",
#  "store_versions", "counts"}. Every `pairsift split` rewrites the table whole (small: one row
# per prompt); assignments depend only on (seed, prompt_id), so a re-run keeps every old one.

SPLITS = "splits"
SPLIT_META_KEY = b"pairsift.split"


def splits_schema(meta: dict) -> pa.Schema:
    schema = pa.schema([id_field("prompt_id"), pa.field("heldout", pa.bool_(), nullable=False)])
    return with_version(schema).with_metadata(
        {**with_version(schema).metadata, SPLIT_META_KEY: json.dumps(meta, sort_keys=True).encode()}
    )


def split_meta(schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(SPLIT_META_KEY)
    return json.loads(raw) if raw else {}
