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
