"""One error hierarchy. Every message says what is wrong and, where there is one, the fix.

The CLI catches :class:`PairsiftError` once and exits non-zero with the message. Each subclass
also subclasses the builtin it resembles, so library callers can catch either.
"""

from __future__ import annotations

from types import ModuleType


class PairsiftError(Exception):
    """Base class for every error pairsift raises on purpose."""


class StoreError(PairsiftError):
    """The store cannot be opened or written as asked."""


class SchemaError(PairsiftError, ValueError):
    """A table's schema or schema version is not what this pairsift expects."""


class IntegrityError(PairsiftError, ValueError):
    """Stored data contradicts itself or the store's contracts (malformed ids, a subset whose
    chosen/rejected are not its pair's responses, features computed from a table that is gone).

    Not the user's input and not a version mismatch: the message says what is broken and how to
    rebuild it.
    """


class _KeyMessage(KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class TableNotFound(PairsiftError, _KeyMessage):
    """A table the command needs does not exist yet; the message names the command that makes it."""


class SubsetNotFound(PairsiftError, _KeyMessage):
    """No saved subset has this name; the message lists the known ones and how to make one."""


class MissingDependency(PairsiftError, ImportError):
    """An optional dependency is not installed; the message gives the pip line."""


class UsageError(PairsiftError, ValueError):
    """A bad combination of options or arguments; the message names the option."""


class InvalidRecord(PairsiftError, ValueError):
    """One input record is invalid. Formats as ``FILE:LINE: field 'X': problem``."""

    def __init__(self, path: str, line: int | None, field: str | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        super().__init__(self.message)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    @property
    def message(self) -> str:
        if self.field:
            return f"{self.where}: field '{self.field}': {self.problem}"
        return f"{self.where}: {self.problem}"

    def to_dict(self) -> dict[str, object]:
        return {"file": self.path, "line": self.line, "field": self.field, "error": self.problem}


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or say the exact install line."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependency(
            f"{module} is needed for this command: pip install 'pairsift[{extra}]'"
        ) from e
