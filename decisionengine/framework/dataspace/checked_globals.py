"""Checking versions of allowed reconstruction helpers that trust their arguments.

The allow-list keeps a payload from naming code, but some data types rebuild themselves
from internal structure they never check, and a crafted structure breaks the reader's
memory when the object is used (found while writing the allow-list; pandas 3.1, pyarrow 26):

* a pandas ``BlockManager`` whose block is placed at a column beyond its axis writes out of
  bounds the first time pandas maps columns to blocks (``free(): invalid pointer``);
* a ``Categorical`` with object categories and codes beyond them reads a pointer out of
  bounds when converted (segmentation fault);
* a pyarrow string array whose offsets point past its data reads out of bounds.

The unpickler hands out these functions in place of the originals: each calls the
original and checks the structure before anything uses it.  A failed check is a
``pickle.UnpicklingError`` (the data source reports the product as corrupt).  Plain
protocol-2 ``bytes`` (``_codecs.encode``) are here too: latin-1 only, no codec lookup.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Iterable
from typing import Any

from decisionengine.framework.dataspace.errors import UntrustedPayloadError


def latin1_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode`` as protocols 0-2 use it to store ``bytes``: latin-1 text only
    (no other codec is looked up or run)."""
    if not (isinstance(text, str) and encoding in ("latin1", "latin-1") and errors == "strict"):
        raise UntrustedPayloadError(f"_codecs.encode(<{type(text).__name__}>, {encoding!r})")
    return text.encode("latin-1")


# -- pyarrow ---------------------------------------------------------------------------------


def restore_arrow_array(data: Any) -> Any:
    """``pyarrow.lib._restore_array``, then validated: Arrow trusts the offsets it is given."""
    from pyarrow import lib  # noqa: PLC0415 - only payloads holding Arrow arrays need it

    array = lib._restore_array(data)
    check_arrow_array(array)
    return array


#: Arrow's full validation is cheaper than numpy's call overhead for short arrays
FULL_VALIDATION_BELOW = 2048


@functools.cache
def _arrow_kinds() -> tuple[dict[int, Any], frozenset[int]]:
    """({type id: offset width} of string and binary types, {type ids of fixed-width types})."""
    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415

    offsets = {pa.string().id: np.int32, pa.binary().id: np.int32}
    offsets |= {pa.large_string().id: np.int64, pa.large_binary().id: np.int64}
    fixed = [pa.null(), pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16()]
    fixed += [pa.uint32(), pa.uint64(), pa.float16(), pa.float32(), pa.float64(), pa.date32(), pa.date64()]
    fixed += [pa.time32("s"), pa.time64("us"), pa.timestamp("s"), pa.duration("s"), pa.month_day_nano_interval()]
    fixed += [pa.decimal128(1), pa.decimal256(1), pa.binary(1)]  # binary(1): fixed_size_binary
    return offsets, frozenset(kind.id for kind in fixed)


def check_arrow_array(array: Any) -> None:
    """Buffer sizes always; for long (large) strings and binaries the offsets (in bounds,
    not decreasing) with numpy, which costs a tenth of Arrow's full validation (that one
    also checks UTF-8, a matter of correctness that conversion checks anyway); Arrow's full
    validation for short arrays and for nested and other variable-size types."""
    import numpy as np  # noqa: PLC0415

    offsets_of, fixed_width = _arrow_kinds()
    kind = array.type.id
    if kind in fixed_width:
        array.validate()
        return  # the buffer sizes are all there is
    width = offsets_of.get(kind)
    if width is None or len(array) < FULL_VALIDATION_BELOW:
        array.validate(full=True)
        return
    array.validate()
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=width)[array.offset : array.offset + len(array) + 1]
    data_size = buffers[2].size if buffers[2] is not None else 0
    if len(offsets) and (offsets[0] < 0 or offsets[-1] > data_size or (offsets[1:] < offsets[:-1]).any()):
        raise pickle.UnpicklingError(f"an Arrow {array.type} array whose offsets are out of bounds or decreasing")


# -- pandas ----------------------------------------------------------------------------------


def block_manager(blocks: Iterable[Any], axes: Any, *args: Any, **kwargs: Any) -> Any:
    """``BlockManager(blocks, axes)`` (how pandas 1.3 to 3 pickle a frame's data) with every
    block placed within the columns axis.  (A series' ``SingleBlockManager`` is rebuilt by
    ``__setstate__``, which never maps its one block to columns.)"""
    import numpy as np  # noqa: PLC0415
    from pandas.core.internals.managers import BlockManager  # noqa: PLC0415

    columns = len(axes[0])
    for block in blocks:
        indexer = block.mgr_locs.indexer  # a slice (the usual case: checked in O(1)) or an array
        if type(indexer) is slice:
            # BlockPlacement refuses negative slice bounds and makes an empty slice an array
            placed = range(indexer.start, indexer.stop, indexer.step)
            lowest, highest = min(placed[0], placed[-1]), max(placed[0], placed[-1])
        else:
            indexer = np.asarray(indexer)
            lowest, highest = (indexer.min(), indexer.max()) if indexer.size else (0, -1)
        if lowest < 0 or highest >= columns:
            raise pickle.UnpicklingError(
                f"a pandas frame with a block placed at {lowest}..{highest}, outside its {columns} columns"
            )
    return BlockManager(blocks, axes, *args, **kwargs)


@functools.cache
def _checked_categorical() -> type:
    """A ``Categorical`` that checks its codes when its state is set, then becomes a plain
    ``Categorical`` (same memory layout: no slots of its own)."""
    import pandas as pd  # noqa: PLC0415

    class CheckedCategorical(pd.Categorical):
        __slots__ = ()

        def __setstate__(self, state: Any) -> None:
            super().__setstate__(state)  # may call __setstate__ again (older state layouts)
            if type(self) is not pd.Categorical:
                _check_codes(self)

    return CheckedCategorical


def _check_codes(categorical: Any) -> None:
    """Codes within -1 (missing) .. categories - 1; then the object becomes a plain Categorical."""
    import pandas as pd  # noqa: PLC0415

    codes = categorical._ndarray
    categories = len(categorical.dtype.categories)
    if codes.dtype.kind not in "iu" or (codes.size and (codes.min() < -1 or codes.max() >= categories)):
        raise pickle.UnpicklingError(f"a pandas Categorical whose codes are outside its {categories} categories")
    categorical.__class__ = pd.Categorical


def unpickle_ndarray_backed(cls: Any, checksum: Any, state: Any) -> Any:
    """``pandas._libs.arrays.__pyx_unpickle_NDArrayBacked`` (how pandas pickles Categorical,
    DatetimeArray, ...); a Categorical is rebuilt as one that checks its codes."""
    import pandas as pd  # noqa: PLC0415
    from pandas._libs import arrays  # noqa: PLC0415

    original: Callable[..., Any] = arrays.__pyx_unpickle_NDArrayBacked
    if cls is not pd.Categorical:
        return original(cls, checksum, state)
    rebuilt = original(_checked_categorical(), checksum, state)
    if state is not None:  # the state came with the call: no __setstate__ follows
        _check_codes(rebuilt)
    return rebuilt


#: {(module, name): checking version} for the allowed globals above
CHECKED: dict[tuple[str, str], Callable[..., Any]] = {
    ("_codecs", "encode"): latin1_encode,
    ("pyarrow.lib", "_restore_array"): restore_arrow_array,
    ("pandas.core.internals.managers", "BlockManager"): block_manager,
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"): unpickle_ndarray_backed,
}
