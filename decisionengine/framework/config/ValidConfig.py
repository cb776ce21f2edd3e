"""``ValidConfig``: a read-only mapping over an evaluated jsonnet configuration file.

Files are evaluated by go-jsonnet (``gojsonnet``), the Go implementation the jsonnet project
maintains beside the C++ one: it evaluates a channel file in well under a millisecond where
the C++ one takes about 60 ms (it prepares its standard library for every file), which made
a server of hundreds of channels spend its first seconds in jsonnet.  It is imported where a
file is evaluated, not with this module: it starts the Go runtime's threads, which a process
forked afterwards (the channel processes' fork server imports this module) would not have.

jsonnet imports resolve relative to the importing file first (jsonnet's own rule), then
in :data:`LIBRARY_DIR`, the directory shipped with this package that holds
``de_std.libsonnet``, so a channel file can say ``local de_std = import 'de_std.libsonnet';``.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

LIBRARY_DIR = str(pathlib.Path(__file__).resolve().parent / "libsonnet")


def evaluate_jsonnet(path: str | os.PathLike[str]) -> Any:
    """The JSON value of a jsonnet file.

    ``FileNotFoundError`` if there is no such file; ``RuntimeError`` naming the file and
    carrying jsonnet's own message (position included) when it does not evaluate.
    """
    import _gojsonnet  # noqa: PLC0415 - see the module's docstring

    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"configuration file {str(file)!r} does not exist or is not a file")
    try:
        text = _gojsonnet.evaluate_file(str(file), jpathdir=[str(file.resolve().parent), LIBRARY_DIR])
    except RuntimeError as exc:
        raise RuntimeError(f"{file}: invalid jsonnet: {str(exc).strip()}") from None
    return json.loads(text)


class ValidConfig(Mapping[str, Any]):
    """The evaluated content of a jsonnet file whose top level is an object.

    Read-only: item assignment is not supported; :meth:`to_dict` gives a deep copy to edit.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        value = evaluate_jsonnet(path)
        if not isinstance(value, dict):
            raise RuntimeError(f"{self.path}: the configuration must be an object, not {type(value).__name__}")
        self._data: dict[str, Any] = value

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ValidConfig({self.path!r})"

    def to_dict(self) -> dict[str, Any]:
        """A deep, mutable copy of the configuration."""
        return copy.deepcopy(self._data)
