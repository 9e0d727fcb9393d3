"""Raw records from files on disk, each with the position a user can find it at.

:func:`iter_records` streams ``(line, record, raw, origin)`` tuples from any supported input:

- ``.jsonl`` / ``.ndjson`` (optionally ``.gz``): one JSON object per line; ``line`` is the
  1-based line number, ``raw`` the line's text. Read in binary and decoded line by line, so
  memory stays bounded and undecodable bytes are reported at their line.
- ``.json`` (optionally ``.gz``): a top-level array of objects; ``line`` is the line where
  each element starts. A ``.json`` file that does not start with ``[`` is read as JSON Lines
  (what ``datasets.Dataset.to_json`` writes).
- ``.parquet``: streamed row group by row group; ``line`` is the 1-based row number and ``raw``
  the row as a dict.
- a Hugging Face ``save_to_disk`` folder (``state.json`` + Arrow IPC stream shards), or a
  ``DatasetDict`` folder (``dataset_dict.json`` + one folder per split): read with pyarrow alone,
  without importing ``datasets``; ``line`` is the row number within the split, and the split
  name travels in ``origin.split``.
- ``.arrow``: a single Arrow IPC stream or file.

A record that cannot be parsed is yielded as an :class:`~pairsift.errors.InvalidRecord` in
place of the dict, so the reader decides whether to stop or to skip it. A truncated or corrupt
gzip stream is yielded as one final InvalidRecord at the line where it broke.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import InvalidRecord, UsageError

#: Rows converted to Python at a time from Parquet/Arrow: bounds memory on wide rows.
ROW_BATCH = 1024


class Origin(NamedTuple):
    """Where a run of records comes from: the path errors name, and the split (or None)."""

    path: str
    split: str | None = None


#: (line, record dict or InvalidRecord, raw line string / row dict / None, origin)
SourceRecord = tuple[int, "dict | InvalidRecord", Any, Origin]

SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".arrow", "save_to_disk folder")


def iter_records(path: str | Path) -> Iterator[SourceRecord]:
    """Stream the records of `path`; see the module docstring for positions and errors."""
    p = Path(path)
    if p.is_dir():
        yield from _hf_folder(p)
        return
    if not p.exists():
        raise UsageError(f"{path}: no such file or folder")
    if not p.is_file():
        raise UsageError(f"{path}: not a regular file or folder (a FIFO, socket or device cannot be read twice)")
    name = p.name.lower()
    base = name.removesuffix(".gz")
    origin = Origin(str(path))
    if base.endswith((".jsonl", ".ndjson")):
        yield from _jsonl(p, origin)
    elif base.endswith(".json"):
        yield from _json(p, origin)
    elif name.endswith(".parquet"):
        yield from _parquet(p, origin)
    elif name.endswith(".arrow"):
        yield from _arrow_file(p, origin)
    else:
        raise UsageError(
            f"{path}: unsupported file type; expected one of {', '.join(SUFFIXES)} "
            "(.jsonl and .json may be gzipped)"
        )


# --- JSON Lines ---------------------------------------------------------------------------


def _open_binary(p: Path):
    return gzip.open(p, "rb") if p.name.lower().endswith(".gz") else open(p, "rb")


_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _gzip_problem(e: Exception) -> str:
    if isinstance(e, EOFError):
        return f"truncated gzip stream ({e}); the file is incomplete"
    return f"corrupt gzip stream: {e}"


def _jsonl(p: Path, origin: Origin, f=None) -> Iterator[SourceRecord]:
    path = origin.path
    n = 0
    loads = json.loads
    f = f if f is not None else _open_binary(p)
    with f:
        try:
            for b in f:
                n += 1
                if n == 1 and b.startswith(b"\xef\xbb\xbf"):
                    b = b[3:]  # a UTF-8 byte-order mark (Windows editors write one)
                try:
                    s = b.decode()
                except UnicodeDecodeError as e:
                    yield n, InvalidRecord(path, n, None, _utf8_problem(b, e)), b.decode(
                        "utf-8", "replace"
                    ), origin
                    continue
                if not s or s.isspace():
                    continue
                try:
                    obj = loads(s)
                except ValueError as e:
                    yield n, InvalidRecord(path, n, None, _json_problem(e)), s, origin
                    continue
                if type(obj) is not dict:
                    yield n, InvalidRecord(path, n, None, _not_object(obj)), s, origin
                    continue
                # A lone surrogate can only come from a \uD8xx-\uDFxx escape; Arrow cannot
                # store it. Check the rare lines that have such an escape, not every line.
                if ("\\ud" in s or "\\uD" in s) and (bad := _surrogate_field(obj)) is not None:
                    yield n, InvalidRecord(path, n, bad, _SURROGATE), s, origin
                    continue
                yield n, obj, s, origin
        except _GZIP_ERRORS as e:
            yield n + 1, InvalidRecord(path, n + 1, None, _gzip_problem(e)), None, origin


def _utf8_problem(b: bytes, e: UnicodeDecodeError) -> str:
    # 1-based, like the column numbers of JSON errors and editors.
    bad = b[e.start : e.start + 4]
    return f"invalid UTF-8 at byte {e.start + 1} of the line ({bad!r}: {e.reason})"


def _json_problem(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON: {e.msg} (column {e.colno})"
    return f"invalid JSON: {e}"


def _not_object(obj) -> str:
    kind = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
    return f"record is a JSON {kind.get(type(obj), 'null')}, expected an object"


_SURROGATE = "string contains a lone surrogate escape (\\ud800-\\udfff), which is not valid Unicode"


def _surrogate_field(obj: dict) -> str | None:
    """The top-level field holding a string with a lone surrogate, or None."""
    for key, value in obj.items():
        if not _utf8_ok(key) or not _deep_utf8_ok(value):
            return key
    return None


def _utf8_ok(s: str) -> bool:
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


def _deep_utf8_ok(v) -> bool:
    if isinstance(v, str):
        return _utf8_ok(v)
    if isinstance(v, dict):
        return all(_utf8_ok(k) and _deep_utf8_ok(x) for k, x in v.items())
    if isinstance(v, list):
        return all(_deep_utf8_ok(x) for x in v)
    return True


# --- JSON array ---------------------------------------------------------------------------


def _json(p: Path, origin: Origin) -> Iterator[SourceRecord]:
    """A top-level JSON array, element by element; falls back to JSON Lines.

    A JSON array cannot be parsed incrementally with the standard library, so the text is read
    whole; each element is decoded in place with ``raw_decode`` (no second copy of the records).
    """
    path = origin.path
    f = _open_binary(p)
    try:
        head = f.peek(64)[:64] if hasattr(f, "peek") else b""
    except _GZIP_ERRORS as e:
        f.close()
        yield 1, InvalidRecord(path, 1, None, _gzip_problem(e)), None, origin
        return
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        yield from _jsonl(p, origin, f=f)
        return
    with f:
        try:
            data = f.read()
        except _GZIP_ERRORS as e:
            yield 1, InvalidRecord(path, 1, None, _gzip_problem(e)), None, origin
            return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        yield line, InvalidRecord(
            path, line, None, _utf8_problem(data[start:], _shift(e, start))
        ), None, origin
        return
    del data
    yield from _json_elements(text, origin)


def _shift(e: UnicodeDecodeError, start: int) -> UnicodeDecodeError:
    return UnicodeDecodeError(e.encoding, e.object, e.start - start, e.end - start, e.reason)


_WS = " \t\r\n"


def _json_elements(text: str, origin: Origin) -> Iterator[SourceRecord]:
    path = origin.path
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip(_WS)) + 1  # just after "["
    line = 1 + text.count("\n", 0, pos)
    expect_value = True
    first = True
    cut_short = False  # the last element ended at a string broken by a newline
    n = len(text)
    while True:
        start = pos
        while pos < n and text[pos] in _WS:
            pos += 1
        line += text.count("\n", start, pos)
        if pos >= n:
            problem = "invalid JSON: unterminated array"
            yield line, InvalidRecord(path, line, None, problem), None, origin
            return
        ch = text[pos]
        if ch == "]" and (first or not expect_value):
            rest = text[pos + 1 :].strip(_WS)
            if rest:
                yield line, InvalidRecord(
                    path, line, None, "invalid JSON: extra data after the top-level array"
                ), None, origin
            return
        if not expect_value:
            if ch in "{[":
                # A missing comma: report it (unless the element before was cut short at a broken
                # string, which already was), then read the element that follows anyway.
                if not cut_short:
                    problem = "invalid JSON: missing ',' between array elements"
                    yield line, InvalidRecord(path, line, None, problem), None, origin
                expect_value = True
                cut_short = False
                continue
            if ch != ",":
                problem = f"invalid JSON: expected ',' or ']' between array elements, got {ch!r}; nothing after it can be read"
                raise InvalidRecord(path, line, None, problem)
            pos += 1
            expect_value = True
            cut_short = False
            continue
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            # Skip just this element: find where it ends and go on with the next one.
            end, cut_short = _element_end(text, pos)
            if end is None or end == pos:
                raise InvalidRecord(
                    path, e.lineno, None,
                    f"{_json_problem(e)}; cannot tell where this array element ends, so nothing after "
                    f"line {line} can be read",
                ) from None
            yield e.lineno, InvalidRecord(path, e.lineno, None, _json_problem(e)), text[pos:end], origin
            line += text.count("\n", pos, end)
            pos = end
            expect_value = False
            first = False
            continue
        raw = text[pos:end]
        if type(obj) is not dict:
            yield line, InvalidRecord(path, line, None, _not_object(obj)), raw, origin
        elif ("\\ud" in raw or "\\uD" in raw) and (bad := _surrogate_field(obj)) is not None:
            yield line, InvalidRecord(path, line, bad, _SURROGATE), raw, origin
        else:
            yield line, obj, raw, origin
        line += text.count("\n", pos, end)
        pos = end
        expect_value = False
        first = False


def _element_end(text: str, pos: int) -> tuple[int | None, bool]:
    """(just after the invalid array element starting at `pos`, whether it was cut short).

    The element ends where its brackets close, or at the next top-level ',' or ']'. A raw newline
    inside a string (JSON strings cannot hold one) cuts the element short there, so an unclosed
    quote does not swallow the records after it. (None, False) if the text ends first.
    """
    depth, i, n, in_str = 0, pos, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            if c == "\\":
                i += 2
                continue
            if c == "\n":
                return i, True
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            if depth == 0:
                return i, False
            depth -= 1
            if depth == 0:
                return i + 1, False
        elif c == "," and depth == 0:
            return i, False
        i += 1
    return None, False


# --- Parquet and Arrow --------------------------------------------------------------------


def _rows(batches, origin: Origin, start: int = 0) -> Iterator[SourceRecord]:
    n = start
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield n, row, row, origin


def _parquet(p: Path, origin: Origin) -> Iterator[SourceRecord]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for non-Parquet files
        problem = f"not a readable Parquet file: {e}"
        yield 1, InvalidRecord(origin.path, None, None, problem), None, origin
        return
    with pf:
        yield from _rows(_guarded(pf.iter_batches(batch_size=ROW_BATCH), str(p), "Parquet"), origin)


def _guarded(batches, path: str, kind: str):
    """`batches`, with a file that breaks part-way (corrupt page, truncated) as one error line."""
    it = iter(batches)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (OSError, ValueError) as e:  # ArrowInvalid / ArrowIOError subclass these
            raise InvalidRecord(path, None, None, f"not a readable {kind} file: {str(e).splitlines()[0]}") from None
        yield batch


def _arrow_batches(p: Path):
    """Record batches of an Arrow IPC stream (what ``save_to_disk`` writes) or IPC file."""
    import pyarrow as pa

    if not p.is_file():
        raise InvalidRecord(str(p), None, None, "missing: the dataset's state.json lists this data file")
    try:
        source = pa.memory_map(str(p))
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(source)
            return _guarded((reader.get_batch(i) for i in range(reader.num_record_batches)), str(p), "Arrow")
    except (OSError, ValueError) as e:
        raise InvalidRecord(str(p), None, None, f"not a readable Arrow file: {str(e).splitlines()[0]}") from None
    return _guarded(reader, str(p), "Arrow")


def _arrow_file(p: Path, origin: Origin) -> Iterator[SourceRecord]:
    yield from _rows(_split_batches(_arrow_batches(p)), origin)


def _split_batches(batches):
    for batch in batches:
        for off in range(0, batch.num_rows, ROW_BATCH):
            yield batch.slice(off, ROW_BATCH)


def _json_object(path: Path) -> dict:
    """A folder's JSON metadata file, or an InvalidRecord naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRecord(str(path), None, None, "missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidRecord(str(path), None, None, f"cannot be read: {e}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidRecord(str(path), e.lineno, None, f"invalid JSON: {e.msg} (column {e.colno})") from None
    if type(obj) is not dict:
        raise InvalidRecord(str(path), 1, None, _not_object(obj))
    return obj


def _hf_folder(p: Path) -> Iterator[SourceRecord]:
    dd = p / "dataset_dict.json"
    if dd.is_file():
        splits = _json_object(dd).get("splits")
        if type(splits) is not list or not splits or not all(type(x) is str for x in splits):
            raise InvalidRecord(str(dd), None, "splits", "must be a non-empty list of split names")
        for split in splits:
            if not (p / split).is_dir() or "/" in split or split in (".", ".."):
                raise InvalidRecord(str(dd), None, "splits", f"lists split {split!r}, but folder {p / split} is missing")
        for split in splits:
            yield from _hf_dataset(p / split, split)
        return
    if not (p / "state.json").is_file():
        raise UsageError(
            f"{p}: a folder must be a Hugging Face save_to_disk dataset "
            "(with state.json or dataset_dict.json)"
        )
    yield from _hf_dataset(p, None)


def _hf_dataset(folder: Path, split: str | None) -> Iterator[SourceRecord]:
    state_path = folder / "state.json"
    state = _json_object(state_path)
    if split is None:
        split = state.get("_split") or None
        if split is not None and type(split) is not str:
            raise InvalidRecord(str(state_path), None, "_split", f"must be a string, got {split!r}")
    origin = Origin(str(folder), split)
    entries = state.get("_data_files")
    if type(entries) is not list:
        raise InvalidRecord(str(state_path), None, "_data_files", "missing or not a list; is it a save_to_disk dataset?")
    files = []
    for i, d in enumerate(entries):
        name = d.get("filename") if type(d) is dict else None
        if type(name) is not str or not name or "/" in name or name in (".", ".."):
            raise InvalidRecord(str(state_path), None, f"_data_files[{i}].filename", "must be a file name in the folder")
        files.append(folder / name)
    if not files:
        raise UsageError(f"{state_path} lists no _data_files; is it a save_to_disk dataset?")
    for f in files:  # a missing shard fails before any row is read
        if not f.is_file():
            raise InvalidRecord(str(f), None, None, f"missing: {state_path} lists this data file")

    def batches():
        for f in files:
            yield from _arrow_batches(f)

    yield from _rows(_split_batches(batches()), origin)
