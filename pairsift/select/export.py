"""Export a subset for training (TRL preference format) or for annotation.

A labelled subset (every pair oriented) exports TRL's columns ``prompt``, ``chosen``,
``rejected``: plain strings, or conversational message lists when the prompt was ingested with
messages (a plain prompt then becomes one user message, a plain response one assistant
message, so the column has one type). An unlabelled subset exports ``response_a`` /
``response_b`` for annotators instead, blind (texts and ids only, unless ``reveal``);
`pairsift label import` reads their labels back.
Every labelled row also carries the ids, the subset's rank and score, the orientation's label source,
and every feature column of ``pair_features``. In a prompt/chosen/rejected export they are
oriented like the texts (:mod:`pairsift.select.orient`): every gap and DCRM column is
chosen-minus-rejected (its sign flipped where b is chosen), cosine and edit distances are
symmetric and unchanged, and score/source/blank become ``*_chosen``/``*_rejected``. A revealed
annotation export keeps the "a minus b" columns, with a_id/b_id saying which side is a. Texts
and features are read at the table versions the subset recorded (tagged, so they still exist),
never at whatever the store holds now. A Hugging Face folder gets a dataset card (README.md,
:mod:`pairsift.select.card`) with the selection manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from ..errors import TableNotFound, UsageError, require
from .card import write_dataset_card
from .orient import oriented
from .subsets import load_subset

FORMATS = ("jsonl", "parquet", "hf")
# pair_features columns the member row already says better (orientation) or repeats (ids).
_NOT_FEATURES = {"pair_id", "prompt_id", "a_id", "b_id", "label", "label_source", "orientable"}


@dataclass
class ExportReport:
    subset: str
    path: str
    format: str
    rows: int
    labelled: bool
    conversational: bool
    columns: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def guess_format(out: str | Path) -> str:
    p = Path(out)
    name = p.name.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if p.is_dir() or not p.suffix:
        return "hf"
    raise UsageError(f"cannot tell the format of {out!r} from its suffix: use .jsonl, .parquet, a folder, or --format")


def _scan(store, table: str, versions: dict) -> pl.LazyFrame:
    if table not in versions:
        raise TableNotFound(f"subset did not record a version of table '{table}'; re-run `pairsift select`")
    return store.scan(table, version=versions[table])


def subset_frame(store, name: str) -> tuple[pl.DataFrame, dict]:
    """The subset's rows with texts and features joined in (one row per member, rank order)."""
    manifest, members = load_subset(store, name)
    versions = manifest["store_versions"]
    m = pl.from_arrow(members).drop("subset")
    feats = _scan(store, "pair_features", versions)
    keep = [c for c in feats.collect_schema().names() if c not in _NOT_FEATURES]
    feats = feats.select("pair_id", *keep).join(m.lazy().select("pair_id"), on="pair_id", how="semi")
    resp = _scan(store, "responses", versions).select("response_id", "text", "messages")
    resp = resp.join(
        pl.concat([m.lazy().select(response_id="a_id"), m.lazy().select(response_id="b_id")]).unique(),
        on="response_id",
        how="semi",
    )
    prompts = _scan(store, "prompts", versions).select("prompt_id", p_text="text", p_msgs="messages")
    prompts = prompts.join(m.lazy().select("prompt_id").unique(), on="prompt_id", how="semi")
    resp_df = resp.collect()
    df = (
        m.join(prompts.collect(), on="prompt_id", how="left")
        .join(resp_df.rename({"response_id": "a_id", "text": "a_text", "messages": "a_msgs"}), on="a_id", how="left")
        .join(resp_df.rename({"response_id": "b_id", "text": "b_text", "messages": "b_msgs"}), on="b_id", how="left")
        .join(feats.collect(), on="pair_id", how="left")
        .sort("rank")
    )
    missing = df.filter(pl.col("a_text").is_null() | pl.col("b_text").is_null() | pl.col("p_text").is_null())
    if missing.height:
        raise TableNotFound(
            f"subset '{name}': texts of {missing.height} pairs are missing from responses/prompts at the "
            f"recorded versions (e.g. pair {missing['pair_id'][0]})"
        )
    return df, manifest


def _as_messages(msgs: str, text: str, role: str) -> pl.Expr:
    one = pl.concat_list(pl.struct(role=pl.lit(role), content=pl.col(text)))
    return pl.when(pl.col(msgs).is_null()).then(one).otherwise(pl.col(msgs))


def export_frame(store, name: str, reveal: bool = False) -> tuple[pl.DataFrame, bool, bool]:
    """(rows to write, labelled, conversational). An unlabelled subset is exported blind (texts
    and ids only: sources, scores and features bias annotators) unless `reveal`."""
    df, manifest = subset_frame(store, name)
    labelled = bool(manifest["labelled"]) and df["chosen_id"].is_not_null().all()
    conversational = df["p_msgs"].is_not_null().any()
    if conversational:
        prompt = _as_messages("p_msgs", "p_text", "user")
        a, b = _as_messages("a_msgs", "a_text", "assistant"), _as_messages("b_msgs", "b_text", "assistant")
    else:
        prompt, a, b = pl.col("p_text"), pl.col("a_text"), pl.col("b_text")
    a_chosen = pl.col("chosen_id") == pl.col("a_id")
    if labelled:
        texts = [
            prompt.alias("prompt"),
            pl.when(a_chosen).then(a).otherwise(b).alias("chosen"),
            pl.when(a_chosen).then(b).otherwise(a).alias("rejected"),
        ]
    else:
        texts = [prompt.alias("prompt"), a.alias("response_a"), b.alias("response_b")]
    ids = ["prompt_id", "pair_id", "a_id", "b_id", "chosen_id", "rejected_id", "label_source", "rank", "score"]
    feature_cols = [c for c in df.columns if c not in set(ids) | {"p_text", "p_msgs", "a_text", "a_msgs", "b_text", "b_msgs"}]
    if not labelled and not reveal:
        ids, feature_cols = ["prompt_id", "pair_id", "a_id", "b_id"], []
    # Oriented rows get oriented features: gaps chosen-minus-rejected, per-side columns *_chosen/*_rejected.
    features = oriented(feature_cols, pl.when(a_chosen).then(1).otherwise(-1)) if labelled else feature_cols
    out = df.select(*texts, *ids, *features)
    return out, labelled, conversational


def export(store, name: str, out: str | Path, format: str | None = None, reveal: bool = False) -> ExportReport:
    """Write subset `name` to `out` as JSONL, Parquet or an HF ``save_to_disk`` folder."""
    fmt = format or guess_format(out)
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    df, labelled, conversational = export_frame(store, name, reveal)
    out = Path(out)
    if fmt == "hf":
        datasets = require("datasets", "train")
        datasets.Dataset(df.to_arrow()).save_to_disk(str(out))
        write_dataset_card(out, store, name, rows=df.height, columns=df.columns, labelled=labelled)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            df.write_ndjson(out)
        else:
            df.write_parquet(out)
    return ExportReport(name, str(out), fmt, df.height, labelled, bool(conversational), df.columns)
