"""Configuration errors that say which file, which key and what was expected."""

from __future__ import annotations

from collections.abc import Iterable


def key_path(parts: Iterable[str | int]) -> str:
    """``("logger", "max_backup_count")`` -> ``logger.max_backup_count``; list indexes as ``[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


class ConfigError(Exception):
    """A configuration file is unusable.

    ``problems`` lists every problem found (``"key.path: what was expected"``); the message
    starts with the file so an operator knows where to look.
    """

    def __init__(self, path: str | None, problems: Iterable[str]) -> None:
        self.path = str(path) if path is not None else None
        self.problems = list(problems)
        where = f"{self.path}: " if self.path else ""
        if len(self.problems) == 1:
            message = where + self.problems[0]
        else:
            message = where + f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)
