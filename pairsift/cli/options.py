"""Options, output and progress shared by every command (one definition each).

Nothing here imports lancedb, polars, torch or transformers at module level: `pairsift --help`,
`--version` and argument errors must answer at once (a test checks it with ``-X importtime``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
import typing
from collections.abc import Callable, Iterable
from typing import Any, TextIO, TypeVar

import click

from ..compute.device import DEVICE_HELP, check_device
from ..errors import PairsiftError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STORE = "pairsift-store"


def store_option(f: F | None = None, *, create: bool = True) -> Any:
    """--store DIR|URI and --storage-option KEY=VALUE (repeatable), shared by every command.

    Read-only commands use ``@store_option(create=False)``: a missing store is an error there,
    never silently created.
    """
    if f is None:
        return functools.partial(store_option, create=create)

    @click.option(
        "--store",
        "store_uri",
        default=DEFAULT_STORE,
        show_default=True,
        envvar="PAIRSIFT_STORE",
        help="Store location: a local directory or an object-store URI (s3://bucket/path).",
    )
    @click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Passed to the object store (e.g. region=us-east-1, endpoint=http://...). Repeatable.",
    )
    @functools.wraps(f)
    def wrapper(*args: Any, store_uri: str, storage_options: tuple[str, ...], **kwargs: Any) -> Any:
        from ..store import open_store

        opts = {}
        for item in storage_options:
            key, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--storage-option")
            opts[key] = value
        return f(*args, store=open_store(store_uri, opts or None, create=create), **kwargs)

    return wrapper  # type: ignore[return-value]


# ---- output ------------------------------------------------------------------------------------


def echo_json(obj: Any) -> None:
    """Print `obj` (a report with ``to_dict()``, a dict or a list) as indented JSON on stdout."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def echo_json_rows(batches: Iterable[list[dict]]) -> int:
    """A JSON array of rows written batch by batch (lists of dicts), never held whole: the same
    bytes as ``echo_json(all rows)``. Returns the number of rows."""
    n = 0
    for rows in batches:
        if not rows:
            continue
        # Each batch's array without its brackets: "  {...},\n  {...}".
        body = json.dumps(rows, indent=2, sort_keys=True, default=str)[2:-2]
        click.echo(("[\n" if not n else ",\n") + body, nl=False)
        n += len(rows)
    click.echo("\n]" if n else "[]")
    return n


def echo_report(report: Any, as_json: bool) -> None:
    """A library report on stdout: its JSON with ``--json``, else its human ``summary()``."""
    if as_json:
        echo_json(report)
    else:
        click.echo(report.summary())


def json_option(what: str = "the report") -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON on stdout.")


def warn(message: str) -> None:
    """One line on stderr that never mixes with stdout's results."""
    click.echo(f"Warning: {message}", err=True)


class PairsiftGroup(click.Group):
    """Turns library errors into one clean line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PairsiftError as e:
            click.secho(f"Error: {e}", fg="red", err=True)
            ctx.exit(1)


# ---- options whose help is rendered when asked for ---------------------------------------------


class LazyHelpOption(click.Option):
    """An option whose help may be a callable, evaluated only when help is shown.

    Defaults that live in a heavy module (the strategy registry, the batching engine) are read
    from there when `pairsift CMD --help` is rendered, never retyped, and never imported by
    `pairsift --help` or by a run that does not need them.
    """

    def __init__(self, *args: Any, help: str | Callable[[], str] | None = None, **kwargs: Any) -> None:
        self._help_source = help
        super().__init__(*args, help=help if isinstance(help, str) or help is None else "", **kwargs)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        if callable(self._help_source):
            self.help = self._help_source()
            self._help_source = self.help
        return super().get_help_record(ctx)


def _field(config: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(config):
        if f.name == name:
            return f
    raise KeyError(f"{config.__name__} has no field {name!r}")


def field_default(config: type, name: str) -> Any:
    """The default of dataclass field `name` (its factory's value for mutable defaults)."""
    f = _field(config, name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _field_type(config: type, name: str) -> type:
    """int, float, bool or str from the field's annotation (``float | None`` -> float)."""
    hint = typing.get_type_hints(config)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    base = args[0]
    return base if base in (int, float, bool, str) else str


def _shown(value: Any) -> str:
    return "on" if value is True else "off" if value is False else str(value)


def config_option(
    config: type,
    name: str,
    *decls: str,
    from_recipe: bool = False,
    **kwargs: Any,
) -> Callable[[F], F]:
    """A click option for field `name` of the dataclass `config`: help and default come from the field.

    `decls` are the option's spellings (default ``--field-name``); the value always lands in the
    parameter `name`. With `from_recipe`, the option defaults to None so that a YAML recipe can
    fill what the command line leaves out, and the help shows the dataclass default instead.
    """
    f = _field(config, name)
    default = field_default(config, name)
    kind = _field_type(config, name)
    help_text = kwargs.pop("help", f.metadata.get("help", ""))
    spellings = list(decls) or ["--" + name.replace("_", "-")]
    if kind is bool and not any("/" in d for d in spellings):
        kwargs.setdefault("is_flag", True)
    elif kind is not bool:
        kwargs.setdefault("type", kind)
    if from_recipe:
        kwargs["default"] = None
        if default not in (None, "", {}, []):
            help_text = f"{help_text}  [default: {_shown(default)}]".strip()
    else:
        kwargs.setdefault("default", default)
        kwargs.setdefault("show_default", default not in (None, "", False))
    return click.option(*spellings, name, help=help_text, **kwargs)


def device_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: the --device spelling normalised, or a usage error (no torch import)."""
    if value is None:
        return None
    try:
        return check_device(value)
    except UsageError:
        raise click.BadParameter(f"{value!r}: expected {DEVICE_HELP}") from None


def device_option(config: type, *, from_recipe: bool = False) -> Callable[[F], F]:
    """--device with one meaning everywhere: auto, cpu, cuda or cuda:N (checked without torch).

    Its default and help come from `config`'s ``device`` field, like every other option.
    """
    return config_option(config, "device", from_recipe=from_recipe, callback=device_callback,
                         metavar="auto|cpu|cuda|cuda:N")


# ---- renamed options ---------------------------------------------------------------------------


def deprecated_option(old: str, new: str, dest: str, **kwargs: Any) -> Callable[[F], F]:
    """A hidden option kept for one release under its old spelling; using it warns on stderr.

    `new` says what to write instead (e.g. "the first argument: pairsift eval SUBSET").
    """

    def note(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            warn(f"{old} is deprecated and will be removed in the next release; use {new}")
        return value

    return click.option(old, dest, hidden=True, default=None, callback=note, expose_value=True, **kwargs)


def positional_or_deprecated(positional: str | None, deprecated: str | None, what: str, option: str) -> str:
    """The value of an argument that used to be an option: one of the two, not both, not neither."""
    if positional is not None and deprecated is not None and positional != deprecated:
        raise click.UsageError(f"{what} given twice: as the argument ({positional}) and as {option} ({deprecated})")
    value = positional if positional is not None else deprecated
    if value is None:
        raise click.UsageError(f"Missing argument '{what}'.")
    return value


# ---- progress ----------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """The one progress line of every command: on stderr, drawn only when stderr is a terminal.

    Call it as the library's progress callback, ``progress(done, total)``, in any unit (rows,
    prompts, tokens, checkpoints: `unit` names it); `total` None when unknown. It shows the count,
    the share of the total, the rate since the first call and the ETA that rate gives
    (``remaining / rate``: the library decides what a unit is worth, e.g. tokens rather than rows
    when rows differ in length). `note` adds a short tail (current checkpoint, records read).
    Redraws are throttled to `min_interval` seconds, except the last one (``done == total``).
    """

    def __init__(
        self,
        desc: str,
        unit: str = "rows",
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc, self.unit = desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.min_interval = min_interval
        self._clock = clock
        self._start: tuple[float, int] | None = None
        self._last_draw = -float("inf")
        self._width = 0
        self.text = ""

    def __call__(self, done: int, total: int | None = None, note: str | None = None) -> None:
        now = self._clock()
        if self._start is None:
            self._start = (now, done)
        final = total is not None and done >= total
        if not self.live or (now - self._last_draw < self.min_interval and not final):
            return
        self._last_draw = now
        self.text = self.line(done, total, now, note)
        pad = max(0, self._width - len(self.text))
        self.stream.write("\r" + self.text + " " * pad)
        self.stream.flush()
        self._width = len(self.text)

    def line(self, done: int, total: int | None, now: float | None = None, note: str | None = None) -> str:
        """The text of the line for `done` of `total` at time `now`."""
        now = self._clock() if now is None else now
        t0, d0 = self._start or (now, done)
        elapsed = now - t0
        rate = (done - d0) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {done:,}" + (f"/{total:,}" if total is not None else "") + f" {self.unit}"]
        if total:
            parts[0] += f" {100 * min(done, total) / total:.0f}%"
        if rate > 0:
            parts.append(f"{rate:,.0f} {self.unit}/s")
            if total is not None and done < total:
                parts.append(f"ETA {_duration((total - done) / rate)}")
        if note:
            parts.append(note)
        return " · ".join(parts)

    def close(self) -> None:
        """End the line (the summary that follows starts on a fresh one)."""
        if self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
