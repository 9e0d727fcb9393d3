"""The dataset card (README.md) of an exported subset: what the rows are and how they were chosen.

Written into Hugging Face folder exports (``save_to_disk``) and into the folder
``--push-to-hub`` uploads (:mod:`pairsift.select.hub`, with the Hub's YAML header). It carries
the selection manifest: strategy, every parameter, seed, counts selected and excluded by reason,
the store and the table versions (tagged ``subset-<name>``) the pairs were read at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..store.subsets import read_manifest
from .orient import is_gap, is_symmetric


def _manifest_dict(manifest: Any) -> dict[str, Any]:
    out = manifest.to_dict()
    out.pop("notes", None)
    return out


def dataset_card(manifest: Any, *, store_uri: str, rows: int, columns: list[str], labelled: bool,
                 front_matter: dict[str, Any] | None = None, load_hint: str | None = None) -> str:
    """README.md text for an export of the subset `manifest` describes (`columns` as written)."""
    import yaml

    from .. import __version__

    m = _manifest_dict(manifest)
    name = m.get("name")
    lines: list[str] = []
    if front_matter:
        lines += ["---", yaml.safe_dump(front_matter, sort_keys=False).strip(), "---", ""]
    lines += [f"# {name}", ""]
    kind = ("preference pairs in TRL's format (`prompt`, `chosen`, `rejected`)" if labelled
            else "unlabelled pairs for annotation (`prompt`, `response_a`, `response_b`)")
    lines.append(f"{rows:,} {kind}, selected by pairsift {__version__} with the `{m.get('strategy')}` strategy.")
    lines.append("")
    if load_hint:
        lines += ["```python", load_hint, "```", ""]

    lines += ["## Selection", ""]
    params = {k: v for k, v in (m.get("params") or {}).items() if v is not None}
    lines.append(f"- strategy: `{m.get('strategy')}`")
    lines.append(f"- parameters: `{json.dumps(params, sort_keys=True, default=str)}`")
    lines.append(f"- seed: {m.get('seed')}")
    counts = m.get("counts") or {}
    if counts:
        lines.append(f"- selected: {counts.get('selected', rows):,} pairs"
                     + (f" from {counts['prompts_selected']:,} prompts" if "prompts_selected" in counts else ""))
        if "rows_read" in counts:
            lines.append(f"- read: {counts['rows_read']:,} candidate pairs of {counts.get('prompts_read', 0):,} prompts")
        excluded = {k: v for k, v in (counts.get("excluded") or {}).items() if v}
        if excluded:
            lines.append("- excluded, by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(excluded.items())))
    lines.append(f"- store: `{store_uri}`, tag `{m.get('tag')}`")
    versions = m.get("store_versions") or {}
    lines.append("- table versions read: " + ", ".join(f"`{t}` v{v}" for t, v in sorted(versions.items())))
    if m.get("created_at"):
        lines.append(f"- selected at: {m['created_at']}")
    lines.append("")
    lines.append("Full manifest (JSON):")
    lines += ["", "```json", json.dumps(m, indent=2, sort_keys=True, default=str), "```", ""]

    lines += ["## Columns", ""]
    if labelled:
        flipped = [c for c in columns if is_gap(c)]
        same = [c for c in columns if is_symmetric(c)]
        lines.append("Feature columns are oriented like the texts, chosen minus rejected:")
        lines.append("- sign flipped where the dataset's second response (b) is the chosen one: "
                     + (", ".join(f"`{c}`" for c in flipped) or "none in this export"))
        lines.append("- symmetric, unchanged: " + (", ".join(f"`{c}`" for c in same) or "none in this export"))
        sides = [c for c in columns if c.endswith(("_chosen", "_rejected")) and c not in ("chosen_id",)]
        if sides:
            lines.append("- per side: " + ", ".join(f"`{c}`" for c in sides))
    else:
        lines.append("Gap columns are `a` minus `b` (`a_id`, `b_id` say which response is which).")
    lines.append("- ids: `prompt_id`, `pair_id`, `a_id`, `b_id`, `chosen_id`, `rejected_id`; `rank` and `score` "
                 "are the strategy's (rank 0 = first pick).")
    lines.append("")
    return "\n".join(lines)


def write_dataset_card(folder: str | Path, store: Any, name: str, *, rows: int, columns: list[str],
                       labelled: bool, **kwargs: Any) -> Path:
    """Write README.md for subset `name`'s export into `folder`."""
    manifest = read_manifest(store, name)
    path = Path(folder) / "README.md"
    hint = kwargs.pop("load_hint", f"from datasets import load_from_disk\nds = load_from_disk({str(folder)!r})")
    path.write_text(dataset_card(manifest, store_uri=store.uri, rows=rows, columns=columns, labelled=labelled,
                                 load_hint=hint, **kwargs))
    return path
