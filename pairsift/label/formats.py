"""Argilla and Label Studio: export a subset's unlabelled pairs for them, read their labels back.

Both exports are **blind** by default: prompt, response A, response B and the pair id, nothing
else; generator names, dataset scores, the strategy's score and the feature columns bias
annotators and are added only with ``reveal=True``. Response A is the pair's ``a_id`` (the
smaller id: a content hash, so which response is A is unrelated to its quality) and labels come
back in those terms.

- **Argilla** (2.x): a JSON array of records, ``rg.Record.from_dict``-compatible: ``id`` = pair
  id, ``fields`` = prompt / response_a / response_b, ``metadata`` (revealed columns only). Make
  the dataset with a ``LabelQuestion("preference", labels=ARGILLA_LABELS)`` and an optional
  ``TextQuestion("rationale")``; a discarded record reads back as "skip". Its export
  (``dataset.records.to_json`` or ``to_list`` nested or flattened) is what `label import` reads.
- **Label Studio**: a JSON array of tasks (``data`` = pair_id, prompt, response_a, response_b);
  the labelling config is :data:`LABEL_STUDIO_CONFIG`. Its JSON export is what `label import`
  reads: the ``preference`` choice, the optional ``rationale`` text area, ``lead_time`` as
  seconds, ``completed_by`` as the annotator, a cancelled (skipped) annotation as "skip".
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from ..errors import UsageError
from ..store import Store
from .table import VOTES, effective, parse_choice, read


@dataclass
class Parsed:
    """One label read from a file, before validation against the subset (any format)."""

    line: int | None
    pair_id: object
    label: object = None
    chosen_id: object = None
    annotator: object = None
    rationale: object = None
    seconds: object = None
    where: str = ""  # "record N" for formats without lines



EXPORT_FORMATS = ("argilla", "label-studio")

#: The Argilla LabelQuestion's labels (value -> text shown); also accepted back as choices.
ARGILLA_LABELS = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
_DISPLAY = {v.lower(): k for k, v in ARGILLA_LABELS.items()}

LABEL_STUDIO_CONFIG = """<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <View style="display: grid; grid-template-columns: 1fr 1fr; column-gap: 1em">
    <View><Header value="Response A"/><Text name="response_a" value="$response_a"/></View>
    <View><Header value="Response B"/><Text name="response_b" value="$response_b"/></View>
  </View>
  <Choices name="preference" toName="prompt" choice="single" showInline="true" required="true">
    <Choice value="A is better" alias="a" hotkey="1"/>
    <Choice value="B is better" alias="b" hotkey="2"/>
    <Choice value="Tie" alias="tie" hotkey="3"/>
    <Choice value="Both bad" alias="both_bad" hotkey="4"/>
  </Choices>
  <TextArea name="rationale" toName="prompt" placeholder="Why? (optional)" maxSubmissions="1"/>
</View>
"""


def _choice(value: object) -> object:
    """A tool's label value as our choice (display texts accepted); unknown values pass through
    so validation names them."""
    if isinstance(value, str):
        return parse_choice(value) or _DISPLAY.get(value.strip().lower(), value)
    return value


def detect(first: list[dict]) -> str:
    """Which tool wrote these records (from the first one): "argilla", "label-studio" or "rows"."""
    if not first or not isinstance(first[0], dict):
        return "rows"
    rec = first[0]
    if "annotations" in rec or ("data" in rec and isinstance(rec.get("data"), dict)):
        return "label-studio"
    if "fields" in rec or "responses" in rec or any(k.endswith(".responses") for k in rec):
        return "argilla"
    return "rows"


# ---- reading their exports -----------------------------------------------------------------------


def parse_argilla(rec: dict) -> Iterator:
    """One Argilla record -> a Parsed label per submitted (or discarded) response."""
    pid = rec.get("id") or rec.get("external_id")
    nested = rec.get("responses")
    if isinstance(nested, dict):
        prefs = nested.get("preference") or []
        notes = {str(r.get("user_id")): r.get("value") for r in (nested.get("rationale") or []) if isinstance(r, dict)}
        for r in prefs:
            if not isinstance(r, dict):
                continue
            status = r.get("status")
            if status == "draft":
                continue
            value = "skip" if status == "discarded" else _choice(r.get("value"))
            user = r.get("user_id")
            yield Parsed(None, pid, value, annotator=None if user is None else str(user), rationale=notes.get(str(user)))
        return
    values = rec.get("preference.responses") or []
    users = rec.get("preference.responses.users") or [None] * len(values)
    statuses = rec.get("preference.responses.status") or [None] * len(values)
    notes = dict(zip(map(str, rec.get("rationale.responses.users") or []), rec.get("rationale.responses") or []))
    for value, user, status in zip(values, users, statuses):
        if status == "draft":
            continue
        value = "skip" if status == "discarded" else _choice(value)
        yield Parsed(None, pid, value, annotator=None if user is None else str(user), rationale=notes.get(str(user)))


def _ls_user(completed_by: object) -> str | None:
    if isinstance(completed_by, dict):
        got = completed_by.get("email") or completed_by.get("id")
        return None if got is None else str(got)
    if completed_by is None:
        return None
    return f"ls-user-{completed_by}"


def parse_label_studio(task: dict) -> Iterator:
    """One Label Studio task -> a Parsed label per annotation."""
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    pid = data.get("pair_id")
    for ann in task.get("annotations") or []:
        if not isinstance(ann, dict):
            continue
        choice, note = None, None
        for res in ann.get("result") or []:
            if not isinstance(res, dict):
                continue
            value = res.get("value") if isinstance(res.get("value"), dict) else {}
            if res.get("from_name") == "preference" and value.get("choices"):
                choice = _choice(value["choices"][0])
            elif res.get("from_name") == "rationale" and value.get("text"):
                note = "\n".join(str(t) for t in value["text"])
        if ann.get("was_cancelled"):
            choice = "skip"
        yield Parsed(None, pid, choice, annotator=_ls_user(ann.get("completed_by")), rationale=note,
                     seconds=ann.get("lead_time"))


# ---- exporting for them ----------------------------------------------------------------------


@dataclass
class AnnotationExport:
    subset: str
    path: str
    format: str
    pairs: int  # pairs written
    skipped_labelled: int  # pairs left out because they already have a vote (all=False)
    revealed: bool
    label_config: str | None  # where the Label Studio config was written, if asked

    def to_dict(self) -> dict:
        return asdict(self)


def _write_json(path: Path, obj) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_for_annotation(
    store: Store,
    subset: str,
    out: str | Path,
    format: str,
    *,
    reveal: bool = False,
    all_pairs: bool = False,
    label_config: str | Path | None = None,
) -> AnnotationExport:
    """Write the subset's pairs that have no vote yet (every pair with `all_pairs`) for Argilla
    or Label Studio; blind unless `reveal`. `label_config`: also write the Label Studio config."""
    from .items import load_items, revealed_columns

    if format not in EXPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(EXPORT_FORMATS)}; got {format!r}")
    if label_config is not None and format != "label-studio":
        raise UsageError("--label-config is for --format label-studio")
    manifest, items = load_items(store, subset)
    skipped = 0
    if not all_pairs:
        voted = set(effective(read(store, subset)).filter(pl.col("choice").is_in(VOTES))["pair_id"].to_list())
        skipped = sum(it.pair_id in voted for it in items)
        items = [it for it in items if it.pair_id not in voted]
    extra = revealed_columns(store, subset, manifest, [it.pair_id for it in items]) if reveal else {}
    if format == "argilla":
        records = [
            {
                "id": it.pair_id,
                "fields": {"prompt": it.prompt, "response_a": it.a_text, "response_b": it.b_text},
                "metadata": _json_safe(extra.get(it.pair_id, {})),
            }
            for it in items
        ]
    else:
        records = [
            {"data": {"pair_id": it.pair_id, "prompt": it.prompt, "response_a": it.a_text, "response_b": it.b_text,
                      **_json_safe(extra.get(it.pair_id, {}))}}
            for it in items
        ]
    out = Path(out)
    _write_json(out, records)
    config_path = None
    if label_config is not None:
        config_path = Path(label_config)
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(LABEL_STUDIO_CONFIG, encoding="utf-8")
    return AnnotationExport(subset, str(out), format, len(items), skipped, reveal,
                            None if config_path is None else str(config_path))


def _json_safe(d: dict) -> dict:
    import math

    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
