"""The objects a data product can hold, and the globals their pickles refer to.

The DataSpace reads payloads through an allow-list of globals
(:mod:`decisionengine.framework.dataspace.allowlist`).  That list is *derived*, not
guessed: this module pickles a broad matrix of values (numpy arrays and scalars of every
dtype, pandas frames, series, indexes and scalars of every dtype, standard-library data
types, nested containers) with every pickle protocol and records each global the
unpickler is asked for.  The test suite checks that the allow-list admits all of them and
that every sample reads back equal; run this file by hand to regenerate the list when
numpy, pandas or pyarrow change::

    .venv/bin/python decisionengine/testing/pickle_matrix.py            # JSON
    .venv/bin/python decisionengine/testing/pickle_matrix.py --python   # paste-able dict
    .venv/bin/python decisionengine/testing/pickle_matrix.py --write FILE  # the pickles too
    .venv/bin/python decisionengine/testing/pickle_matrix.py --write FILE --sample NaT --sample Index[str]

It imports nothing of decisionengine, so it also runs in a virtualenv with older
libraries (that is how the names older pandas and numpy versions write were collected,
and how ``tests/dataspace/data/`` got its pickles written by pandas 1.5).
"""

from __future__ import annotations

import argparse
import builtins
import collections
import datetime
import decimal
import fractions
import io
import json
import pathlib
import pickle
import sys
import types
import uuid
import zlib
import zoneinfo
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

PROTOCOLS = tuple(range(pickle.HIGHEST_PROTOCOL + 1))
Global = tuple[str, str]


def _numpy_samples() -> dict[str, Callable[[], Any]]:
    dtypes = [
        "?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "g", "c8", "c16",
        "M8[ns]", "M8[D]", "M8[s]", "m8[ns]", "m8[s]", "U5", "S5", "O", "V4",
    ]  # fmt: skip
    samples: dict[str, Callable[[], Any]] = {}
    for code in dtypes:
        samples[f"ndarray[{code}]"] = lambda code=code: np.zeros(3, dtype=code)
        samples[f"scalar[{code}]"] = lambda code=code: np.zeros(1, dtype=code)[0]
    samples.update(
        {
            "ndarray[structured]": lambda: np.array([(1, 2.5, "x")], dtype=[("a", "i4"), ("b", "f8"), ("c", "U3")]),
            "ndarray[fortran 2-d]": lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
            "ndarray[non-contiguous]": lambda: np.arange(20)[::3],
            "ndarray[0-d]": lambda: np.array(4.5),
            "ndarray[empty]": lambda: np.empty((0, 3)),
            "ndarray[big-endian]": lambda: np.arange(3, dtype=">i4"),
            "ndarray[object mix]": lambda: np.array([1, "a", None, 2.5], dtype=object),
            "masked array": lambda: np.ma.array([1, 2, 3], mask=[False, True, False]),
            "dtype": lambda: np.dtype("f8"),
        }
    )
    if hasattr(np.dtypes, "StringDType"):  # NumPy 2 only
        samples["ndarray[StringDType]"] = lambda: np.array(["a", "bc"], dtype=np.dtypes.StringDType())
    return samples


def _pandas_samples() -> dict[str, Callable[[], Any]]:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    series: dict[str, Callable[[], Any]] = {
        "int64": lambda: pd.Series([1, 2, 3]),
        "float64": lambda: pd.Series([1.5, np.nan]),
        "bool": lambda: pd.Series([True, False]),
        "object": lambda: pd.Series([1, "a", None, {"k": [1]}], dtype=object),
        "str (default)": lambda: pd.Series(["a", "b", None]),
        "string[python]": lambda: pd.Series(["a", None], dtype=pd.StringDtype("python")),
        "string[pyarrow]": lambda: pd.Series(["a", None], dtype=pd.StringDtype("pyarrow")),
        "category": lambda: pd.Series(pd.Categorical(["a", "b", "a"])),
        "category ordered": lambda: pd.Series(pd.Categorical([3, 1], categories=[3, 1], ordered=True)),
        "datetime64[ns]": lambda: pd.Series(pd.date_range("2020-01-01", periods=3)),
        "datetime64[ns, UTC]": lambda: pd.Series(pd.date_range("2020-01-01", periods=3, tz="UTC")),
        "datetime64[ns, Europe/Paris]": lambda: pd.Series(pd.date_range("2020-01-01", periods=3, tz=paris)),
        "datetime64[ns, +02:00]": lambda: pd.Series(pd.date_range("2020-01-01", periods=3, tz=plus2)),
        "timedelta64[ns]": lambda: pd.Series(pd.to_timedelta([1, 2, 3], unit="s")),
        "period[M]": lambda: pd.Series(pd.period_range("2020-01", periods=3, freq="M")),
        "period[D]": lambda: pd.Series(pd.period_range("2020-01-01", periods=3, freq="D")),
        "period[h]": lambda: pd.Series(pd.period_range("2020-01-01", periods=3, freq="h")),
        "interval[int]": lambda: pd.Series(pd.interval_range(0, 3)),
        "interval[datetime]": lambda: pd.Series(pd.interval_range(pd.Timestamp("2020-01-01"), periods=2)),
        "boolean": lambda: pd.Series([True, None], dtype="boolean"),
        "Sparse[float64]": lambda: pd.Series(pd.arrays.SparseArray([0.0, 0.0, 1.5])),
        "Sparse[int64, block]": lambda: pd.Series(pd.arrays.SparseArray([0, 0, 1], kind="block")),
        "named": lambda: pd.Series([1], name="n"),
    }
    for masked in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64"):
        series[masked] = lambda masked=masked: pd.Series([1, None], dtype=masked)
    for arrow in ("int64", "double", "bool", "string", "large_string", "binary", "date32", "time64[us]",
                  "timestamp[us, tz=UTC]", "duration[s]", "decimal128(5, 2)", "list<item: int64>",
                  "struct<a: int64>", "dictionary<values=string, indices=int32>"):  # fmt: skip
        series[f"ArrowDtype({arrow})"] = lambda arrow=arrow: _arrow_series(arrow)
    if _pytz() is not None:  # pandas < 3 stored time zones as pytz objects
        series["datetime64[ns, pytz Europe/Paris]"] = lambda: pd.Series(
            pd.date_range("2020-01-01", periods=3, tz=_pytz().timezone("Europe/Paris"))
        )
        series["datetime64[ns, pytz UTC]"] = lambda: pd.Series(pd.date_range("2020-01-01", periods=3, tz=_pytz().UTC))
    samples = {f"Series[{name}]": build for name, build in series.items()}

    def mixed() -> pd.DataFrame:
        return pd.DataFrame(
            {
                "i": [1, 2],
                "f": [0.5, np.nan],
                "s": ["a", "b"],
                "o": [{"x": 1}, None],
                "b": [True, False],
                "t": pd.to_datetime(["2020-01-01", "2020-01-02"]).tz_localize(datetime.UTC),
                "c": pd.Categorical(["x", "y"]),
                "n": pd.array([1, None], dtype="Int64"),
            }
        )

    samples.update(
        {
            "DataFrame[mixed]": mixed,
            "DataFrame[empty]": pd.DataFrame,
            "DataFrame[empty with columns]": lambda: pd.DataFrame(columns=["a", "b"]),
            "DataFrame[MultiIndex rows and columns]": lambda: pd.DataFrame(
                [[1, 2], [3, 4]],
                index=pd.MultiIndex.from_tuples([("x", 1), ("y", 2)], names=["k", "n"]),
                columns=pd.MultiIndex.from_tuples([("a", "b"), ("a", "c")]),
            ),
            "DataFrame[interleaved dtypes]": lambda: pd.DataFrame(
                {f"{kind}{i}": [i] for i in range(4) for kind in "fi"}
            ).astype({f"f{i}": float for i in range(4)}),  # blocks placed by slices with a step of 2
            "DataFrame[int index]": lambda: pd.DataFrame({"a": [1.0, 2.0, 3.0]}).iloc[[0, 2]],
            "DataFrame[float index]": lambda: pd.DataFrame({"a": [1, 2]}, index=[0.5, 1.5]),
            "DataFrame[str index]": lambda: pd.DataFrame({"a": [1, 2]}, index=["x", "y"]),
            "DataFrame[DatetimeIndex with freq]": lambda: pd.DataFrame(
                {"a": range(3)}, index=pd.date_range("2020-01-01", periods=3, freq="h", tz=datetime.UTC)
            ),
            "DataFrame[PeriodIndex]": lambda: pd.DataFrame({"a": range(2)}, index=pd.period_range("2020", periods=2)),
            "DataFrame[TimedeltaIndex]": lambda: pd.DataFrame({"a": range(2)}, index=pd.to_timedelta([1, 2], "D")),
            "DataFrame[IntervalIndex]": lambda: pd.DataFrame({"a": range(2)}, index=pd.interval_range(0, 2)),
            "DataFrame[CategoricalIndex]": lambda: pd.DataFrame({"a": [1, 2]}, index=pd.CategoricalIndex(["x", "y"])),
            "DataFrame[attrs]": lambda: pd.DataFrame({"a": [1]}).pipe(lambda f: f.attrs.update(source="s") or f),
            "Index[str]": lambda: pd.Index(["a", "b"]),
            "RangeIndex": lambda: pd.RangeIndex(0, 10, 2),
            "MultiIndex": lambda: pd.MultiIndex.from_product([["a", "b"], [1, 2]]),
            "Categorical": lambda: pd.Categorical(["a", "b"]),
            "Timestamp": lambda: pd.Timestamp("2020-01-01 12:00"),
            "Timestamp[tz]": lambda: pd.Timestamp("2020-01-01 12:00", tz=paris),
            "Timedelta": lambda: pd.Timedelta("1 days 2 hours"),
            "Period": lambda: pd.Period("2020-01", "M"),
            "Interval": lambda: pd.Interval(0, 1, closed="left"),
            "NaT": lambda: pd.NaT,
            "NA": lambda: pd.NA,
            "DateOffset": lambda: pd.DateOffset(days=2, hours=1),
            "ExtensionArray[numpy]": lambda: pd.arrays.NumpyExtensionArray(np.array([1.5, 2.5])),
        }
    )
    for offset in sorted(set(pd.offsets.__all__) - {"BaseOffset"}):  # every offset (the freq of periods, indexes)
        samples[f"offsets.{offset}"] = lambda offset=offset: getattr(pd.offsets, offset)()
    return samples


def _pytz() -> Any:
    try:
        import pytz  # noqa: PLC0415 - only older pandas versions depend on it
    except ImportError:
        return None
    return pytz


def _arrow_series(type_text: str) -> pd.Series:
    import pyarrow as pa  # noqa: PLC0415 - pandas' optional dependency

    values = {
        "int64": [1, None], "double": [1.5, None], "bool": [True, None], "string": ["a", None],
        "large_string": ["a", None], "binary": [b"a", None], "date32": [datetime.date(2020, 1, 2), None],
        "time64[us]": [datetime.time(1, 2), None], "timestamp[us, tz=UTC]": [datetime.datetime(2020, 1, 2), None],
        "duration[s]": [datetime.timedelta(seconds=3), None], "decimal128(5, 2)": [decimal.Decimal("1.25"), None],
        "list<item: int64>": [[1, 2], None], "struct<a: int64>": [{"a": 1}, None],
        "dictionary<values=string, indices=int32>": ["a", None],
    }[type_text]  # fmt: skip
    types_ = {
        "int64": pa.int64(), "double": pa.float64(), "bool": pa.bool_(), "string": pa.string(),
        "large_string": pa.large_string(), "binary": pa.binary(), "date32": pa.date32(), "time64[us]": pa.time64("us"),
        "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"), "duration[s]": pa.duration("s"),
        "decimal128(5, 2)": pa.decimal128(5, 2), "list<item: int64>": pa.list_(pa.int64()),
        "struct<a: int64>": pa.struct([("a", pa.int64())]),
        "dictionary<values=string, indices=int32>": pa.dictionary(pa.int32(), pa.string()),
    }  # fmt: skip
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.array(values, type=types_[type_text])))


def _stdlib_samples() -> dict[str, Callable[[], Any]]:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    nested = {"list": [1, 2.5, "x", None, True], "tuple": (1, (2, 3)), "set": {1, 2}, "dict": {"k": {"n": [b"b"]}}}
    return {
        "None": lambda: None,
        "bool": lambda: True,
        "int": lambda: 7,
        "big int": lambda: 2**100,
        "float": lambda: 1.5,
        "complex": lambda: 1 + 2j,
        "str": lambda: "text é",
        "bytes": lambda: b"\x00\x80bytes",
        "bytes empty": lambda: b"",
        "bytearray": lambda: bytearray(b"\x00x"),
        "tuple": lambda: (1, "a"),
        "list": lambda: [1, "a"],
        "dict": lambda: {"a": 1},
        "set": lambda: {1, 2},
        "frozenset": lambda: frozenset({1}),
        "range": lambda: range(1, 10, 2),
        "slice": lambda: slice(1, 5, 2),
        "Ellipsis": lambda: ...,
        "nested containers": lambda: nested,
        "datetime": lambda: datetime.datetime(2020, 1, 2, 3, 4, 5, 6),
        "datetime[UTC]": lambda: datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC),
        "datetime[zoneinfo]": lambda: datetime.datetime(2020, 1, 2, tzinfo=paris),
        "datetime[offset]": lambda: datetime.datetime(
            2020, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
        ),
        "date": lambda: datetime.date(2020, 1, 2),
        "time": lambda: datetime.time(3, 4, tzinfo=datetime.UTC),
        "timedelta": lambda: datetime.timedelta(days=1, seconds=2),
        "Decimal": lambda: decimal.Decimal("1.10"),
        "Fraction": lambda: fractions.Fraction(1, 3),
        "OrderedDict": lambda: collections.OrderedDict(a=1, b=2),
        "deque": lambda: collections.deque([1, 2], maxlen=5),
        "Counter": lambda: collections.Counter("abca"),
        "defaultdict(list)": lambda: collections.defaultdict(list, a=[1]),
        "defaultdict(None)": lambda: collections.defaultdict(None, a=1),
        "UUID": lambda: uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "UUID[safe]": lambda: uuid.UUID("12345678-1234-5678-1234-567812345678", is_safe=uuid.SafeUUID.safe),
        "SimpleNamespace": lambda: types.SimpleNamespace(a=1, b="x"),
    }


def _major(version: str) -> int:
    return int(version.partition(".")[0])


def cannot_pickle() -> dict[str, str]:
    """{sample@protocol: why} for the samples the installed libraries themselves cannot
    pickle (``pickle.dumps`` raises, with no unpickler involved): known bugs of those
    versions, which the tests expect to see exactly here and nowhere else."""
    found: dict[str, str] = {}
    if _major(pd.__version__) < 3:  # seen with pandas 2.2.3; pandas 3 gives DateOffset a __reduce__
        for name in ("DateOffset", "offsets.DateOffset"):
            for protocol in (0, 1):
                found[f"{name}@{protocol}"] = (
                    "pandas 2 cannot pickle a DateOffset with protocols 0 and 1 (copyreg's "
                    "fallback passes the offset itself as its n: TypeError)"
                )
    return found


def sample_builders() -> dict[str, Callable[[], Any]]:
    """Every sample, by name, as a function building it."""
    return {**_stdlib_samples(), **_numpy_samples(), **_pandas_samples()}


def samples() -> tuple[dict[str, Any], dict[str, str]]:
    """(the samples this environment can build, {name: why not} for the others)."""
    built: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, build in sample_builders().items():
        try:
            built[name] = build()
        except Exception as exc:  # an older library lacks the feature
            skipped[name] = f"{type(exc).__name__}: {exc}"
    return built, skipped


class RecordingUnpickler(pickle.Unpickler):
    """An unrestricted unpickler noting every global it is asked for.

    ``builtins.getattr`` is how pickles name a class's attribute (a bound classmethod such
    as ``zoneinfo.ZoneInfo._unpickle``); its calls are recorded as ``module`` /
    ``Class.attribute`` too, since that is the name the allow-list must hold.
    """

    def __init__(self, file: io.BytesIO, seen: set[Global]) -> None:
        super().__init__(file)
        self.seen = seen

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        self.seen.add((module, name))
        if found is builtins.getattr:
            return self._getattr
        return found

    def _getattr(self, owner: Any, attribute: str) -> Any:
        self.seen.add((owner.__module__, f"{owner.__qualname__}.{attribute}"))
        return getattr(owner, attribute)


def globals_of(payload: bytes) -> set[Global]:
    """The globals one pickle refers to (it is loaded without restriction: trusted input only)."""
    seen: set[Global] = set()
    RecordingUnpickler(io.BytesIO(payload), seen).load()
    return seen


def collect(
    objects: dict[str, Any], protocols: Iterable[int] = PROTOCOLS
) -> tuple[dict[Global, list[str]], dict[str, str]]:
    """({(module, name): [sample@protocol, ...]}, {sample@protocol: error}) over every
    object and protocol; the second holds the pickles this library cannot read back."""
    found: dict[Global, list[str]] = collections.defaultdict(list)
    failed: dict[str, str] = {}
    for name, obj in objects.items():
        for protocol in protocols:
            where = f"{name}@{protocol}"
            try:
                keys = globals_of(pickle.dumps(obj, protocol))
            except Exception as exc:  # e.g. pandas 2 cannot pickle a DateOffset at protocol 0 (cannot_pickle)
                failed[where] = f"{type(exc).__name__}: {exc}"
                continue
            for key in keys:
                found[key].append(where)
    return dict(sorted(found.items())), failed


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "numpy": np.__version__, "pandas": pd.__version__}
    try:
        import pyarrow  # noqa: PLC0415 - optional

        found["pyarrow"] = pyarrow.__version__
    except ImportError:
        pass
    return found


def write_archive(objects: dict[str, Any], path: pathlib.Path, protocols: Iterable[int]) -> None:
    """Every sample's payload as the reference DataSpace stored it (zlib level 9 of the
    pickle), in one file: a zlib-compressed protocol-2 pickle of
    ``{"versions": {...}, "payloads": {"sample@protocol": bytes}}`` (plain data only)."""
    payloads = {
        f"{name}@{protocol}": zlib.compress(pickle.dumps(obj, protocol), 9)
        for name, obj in objects.items()
        for protocol in protocols
    }
    archive = {"versions": versions(), "payloads": payloads}
    path.write_bytes(zlib.compress(pickle.dumps(archive, 2), 9))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="store_true", help="print {module: {names}} as Python")
    parser.add_argument("--where", action="store_true", help="with each global, the samples that use it")
    parser.add_argument("--write", metavar="FILE", help="also write every sample's pickle to FILE (see write_archive)")
    parser.add_argument("--protocols", default=",".join(map(str, PROTOCOLS)), help="comma-separated protocols")
    parser.add_argument("--sample", action="append", metavar="NAME", help="only this sample (repeatable)")
    args = parser.parse_args(argv)
    protocols = [int(p) for p in args.protocols.split(",")]
    objects, skipped = samples()
    if args.sample:
        unknown = set(args.sample) - set(objects) - set(skipped)
        if unknown:
            parser.error(f"no such sample: {', '.join(sorted(unknown))}")
        objects = {name: value for name, value in objects.items() if name in args.sample}
        skipped = {name: why for name, why in skipped.items() if name in args.sample}
    found, failed = collect(objects, protocols)
    if args.write:
        write_archive(objects, pathlib.Path(args.write), protocols)
    for name, why in {**skipped, **failed}.items():
        print(f"not in the matrix here: {name}: {why}", file=sys.stderr)
    if args.python:
        by_module: dict[str, list[str]] = collections.defaultdict(list)
        for module, name in found:
            by_module[module].append(name)
        print(f"# {versions()}")
        for module, names in sorted(by_module.items()):
            print(f'    "{module}": _names("{" ".join(sorted(names))}"),')
    else:
        report = {
            "versions": versions(),
            "skipped": skipped,
            "unreadable": failed,
            "globals": [
                {"module": module, "name": name, **({"samples": where} if args.where else {})}
                for (module, name), where in found.items()
            ],
        }
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
