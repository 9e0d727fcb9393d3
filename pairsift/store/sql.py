"""Building Lance SQL filters from user or stored text: the one place that quotes literals.

Every filter that embeds a name, an id or any other text goes through :func:`literal` (or
:func:`is_in`), so a quote inside a subset name or an id can never end the string early.
"""

from __future__ import annotations

from collections.abc import Iterable


def literal(value: str) -> str:
    """A SQL string literal: single-quoted, inner single quotes doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def equals(column: str, value: str) -> str:
    """``column = 'value'`` with the value quoted."""
    return f"{column} = {literal(value)}"


def is_in(column: str, values: Iterable[str]) -> str:
    """``column IN ('a', 'b', ...)``; an empty list gives a filter that matches nothing."""
    quoted = ", ".join(literal(v) for v in values)
    return f"{column} IN ({quoted})" if quoted else "false"


#: SQL functions whose value changes from one run to the next: a filter using one would make a
#: subset impossible to reproduce from its manifest.
NONDETERMINISTIC = ("random", "rand", "uuid", "now", "current_timestamp", "current_date", "current_time",
                    "localtimestamp", "localtime", "today")


def check_filter(sql: str, option: str = "--where") -> str:
    """`sql` if it is one deterministic expression; else a UsageError naming `option`.

    Refused: ``;`` outside string literals (Lance would silently drop what follows) and the
    non-deterministic functions in :data:`NONDETERMINISTIC`.
    """
    import re

    from ..errors import UsageError

    text = sql.strip()
    if not text:
        raise UsageError(f"{option} is empty")
    bare = re.sub(r"'(?:[^']|'')*'", "''", text)  # string literals out of the way
    if bare.count("'") % 2:
        raise UsageError(f"{option} {sql!r}: unterminated string literal")
    if ";" in bare:
        raise UsageError(f"{option} {sql!r}: one expression only (no ';')")
    for fn in NONDETERMINISTIC:
        if re.search(rf"\b{fn}\s*\(", bare, re.IGNORECASE) or (
            fn.startswith(("current_", "local")) and re.search(rf"\b{fn}\b", bare, re.IGNORECASE)
        ):
            raise UsageError(
                f"{option} {sql!r}: {fn}() changes between runs, so the subset could not be reproduced "
                "from its seed; use a deterministic filter"
            )
    return text
