"""Which globals a stored payload may refer to: the data only, never the code.

A pickle is a small program: its ``GLOBAL`` opcodes name any importable callable, and its
``REDUCE`` opcode calls it with arguments of the writer's choosing (``os.system("...")``).
So a payload read from a database that others can write is unpickled through
:mod:`~decisionengine.framework.dataspace.unpickling`, which admits only the names below:
constructors and reconstruction helpers of *data types*, each listed by its exact module
and name.  A module prefix is never enough: ``pandas.read_pickle``, ``pandas.eval`` and
``numpy.load`` live next to ``pandas.DataFrame`` and ``numpy.ndarray``.

The list is derived, not guessed: ``decisionengine/testing/pickle_matrix.py`` pickles a
matrix of values (numpy arrays and scalars of every dtype; pandas frames, series, indexes,
extension arrays, offsets and scalars of every dtype; the standard library's data types;
nested containers) with protocols 0 to 5 and records every global their pickles name.
``tests/dataspace/test_unpickling.py`` fails when a sample needs a name missing here, so
a new numpy or pandas that pickles differently is noticed in the test suite and the list
is regenerated with that tool (its ``--python`` output has the same layout as below).

One list serves every supported version (CI runs the tests on pandas 2.2 / NumPy 1.26 and
on the newest): :data:`ALLOWED_GLOBALS` names what the newest versions write,
:data:`OLDER_NAMES` what older ones wrote for the same objects (the unpickler imports
whichever form the installed version has, in both directions), and :data:`NEWER_ONLY` the
allowed names that older versions do not have at all.

Four names are callables that call or look up something given to them; they are not
handed out as they are but replaced by checking versions (see ``unpickling``):
``builtins.getattr``, ``collections.defaultdict`` (its ``default_factory``),
``copyreg._reconstructor`` (its class argument) and ``_codecs.encode``; and
``pyarrow.lib._restore_array`` validates the Arrow array it rebuilds.
"""

from __future__ import annotations

from collections.abc import Mapping


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: {module: names} a payload may refer to, as current numpy, pandas and pyarrow write them.
ALLOWED_GLOBALS: Mapping[str, frozenset[str]] = {
    # -- builtins: the data types and constants.  getattr: checked, only to reach an allowed
    # Class.attribute (protocols name a bound class method that way: zoneinfo.ZoneInfo._unpickle)
    "builtins": _names(
        "bool bytearray bytes complex dict float frozenset int list object range set slice str tuple "
        "Ellipsis NotImplemented getattr"
    ),
    "_codecs": _names("encode"),  # checked: latin-1 text to bytes (how protocols 0-2 store bytes)
    "copyreg": _names("_reconstructor"),  # checked: protocols 0 and 1 rebuild allowed classes with it
    # -- the standard library's data types (defaultdict: checked default_factory)
    "collections": _names("Counter OrderedDict deque defaultdict"),
    "datetime": _names("date datetime time timedelta timezone"),
    "decimal": _names("Decimal"),
    "fractions": _names("Fraction"),
    "types": _names("SimpleNamespace"),
    "uuid": _names("UUID"),
    "zoneinfo": _names("ZoneInfo ZoneInfo._unpickle"),
    "dateutil.relativedelta": _names("relativedelta"),  # inside pandas.DateOffset
    # -- numpy: arrays, dtypes, scalars (protocol 5 arrays: _frombuffer; StringDType: _convert...)
    "numpy": _names("dtype ndarray"),
    "numpy._core.multiarray": _names("_reconstruct scalar"),
    "numpy._core.numeric": _names("_frombuffer"),
    "numpy._core._internal": _names("_convert_to_stringdtype_kwargs"),
    "numpy.ma": _names("MaskedArray"),
    "numpy.ma.core": _names("_mareconstruct"),
    # -- pandas: public classes (pandas >= 3 names them under ``pandas``)
    "pandas": _names(
        "DataFrame Series Index RangeIndex MultiIndex CategoricalIndex DatetimeIndex TimedeltaIndex "
        "PeriodIndex IntervalIndex Categorical Interval Period NA DateOffset "
        "ArrowDtype BooleanDtype CategoricalDtype DatetimeTZDtype IntervalDtype PeriodDtype SparseDtype "
        "StringDtype Float32Dtype Float64Dtype Int8Dtype Int16Dtype Int32Dtype Int64Dtype "
        "UInt8Dtype UInt16Dtype UInt32Dtype UInt64Dtype"
    ),
    "pandas.arrays": _names(
        "ArrowExtensionArray ArrowStringArray BooleanArray DatetimeArray FloatingArray IntegerArray "
        "IntervalArray NumpyExtensionArray PeriodArray SparseArray StringArray TimedeltaArray"
    ),
    "pandas.core.dtypes.dtypes": _names("NumpyEADtype"),
    # -- pandas: the reconstruction helpers its pickles call
    "pandas.core.internals.managers": _names("BlockManager SingleBlockManager"),
    "pandas._libs.internals": _names("_unpickle_block"),
    "pandas._libs.arrays": _names("__pyx_unpickle_NDArrayBacked"),
    "pandas._libs.interval": _names("__pyx_unpickle_IntervalMixin"),
    "pandas._libs.sparse": _names("BlockIndex IntIndex"),
    "pandas._libs.tslibs.nattype": _names("_nat_unpickle"),
    "pandas._libs.tslibs.timedeltas": _names("_timedelta_unpickle"),
    "pandas._libs.tslibs.timestamps": _names("_unpickle_timestamp"),
    "pandas.core.indexes.base": _names("_new_Index"),
    "pandas.core.indexes.datetimes": _names("_new_DatetimeIndex"),
    "pandas.core.indexes.interval": _names("_new_IntervalIndex"),
    "pandas.core.indexes.timedeltas": _names("_new_TimedeltaIndex"),
    # -- pandas: date offsets (the freq of periods and indexes)
    "pandas._libs.tslibs.offsets": _names(
        "BHalfYearBegin BHalfYearEnd BQuarterBegin BQuarterEnd BYearBegin BYearEnd BusinessDay BusinessHour "
        "BusinessMonthBegin BusinessMonthEnd CustomBusinessDay CustomBusinessHour CustomBusinessMonthBegin "
        "CustomBusinessMonthEnd Day Easter FY5253 FY5253Quarter HalfYearBegin HalfYearEnd Hour "
        "LastWeekOfMonth Micro Milli Minute MonthBegin MonthEnd Nano QuarterBegin QuarterEnd Second "
        "SemiMonthBegin SemiMonthEnd Tick Week WeekOfMonth YearBegin YearEnd"
    ),
    # -- pyarrow: what pandas' Arrow-backed arrays (the default ``str`` dtype of pandas 3) pickle
    # to; _restore_array: checked, the rebuilt array is validated before anything reads it
    "pyarrow.lib": _names("_restore_array py_buffer type_for_alias timestamp decimal128 dictionary field list_ struct"),
    # -- pytz: the time zones pandas < 3 stored (readable when pytz is installed)
    "pytz": _names("_p _UTC"),
}

#: The framework's own classes a payload may name, each for a reason; not derived by
#: ``pickle_matrix.py`` (the ``--python`` output does not hold them: keep them when the list
#: above is regenerated).  Each is admitted only if it defines ``__setstate__`` itself, which
#: checks the state a pickle gives it (plain data of exact types, else it raises and the
#: product is reported corrupt); a module of the framework is never trusted as a whole.
#: Imported when a payload first names them (the DataSpace does not import the layers above it).
FRAMEWORK_CLASSES: Mapping[tuple[str, str], str] = {
    ("decisionengine.framework.taskmanager.PublisherStatus", "PublisherStatus"): (
        "the publisher_status product every channel stores (also what the reference stored)"
    ),
}

#: Older names of allowed objects: what numpy 1, pandas 1.x and 2.x wrote (collected with
#: ``pickle_matrix.py`` under numpy 1.26 / pandas 1.5.3 and numpy 2.0 / pandas 2.2.3), and
#: pandas' own renames (``pandas.compat.pickle_compat`` of pandas 2.2 and 3).  Each maps to
#: a name above, and each name above stands for all of its older names: the unpickler
#: imports whichever of them the installed version has, so renames work both ways (NumPy
#: 1.26 reads NumPy 2's ``numpy._core.numeric._frombuffer`` as its ``numpy.core.numeric``
#: one, pandas 2.2 pandas 3's ``_nat_unpickle`` as its ``__nat_unpickle``).  An older name
#: admits nothing new: where it still resolves it is the very same object (tested).
OLDER_NAMES: Mapping[tuple[str, str], tuple[str, str]] = {
    # numpy 1 (numpy 2 still answers to these names, with a DeprecationWarning; numpy 1.26
    # has stubs for numpy._core.multiarray, not for numpy._core.numeric)
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy.ma.core", "MaskedArray"): ("numpy.ma", "MaskedArray"),
    # pandas < 3: classes under the module that defines them
    ("pandas.core.frame", "DataFrame"): ("pandas", "DataFrame"),
    ("pandas.core.series", "Series"): ("pandas", "Series"),
    ("pandas.core.indexes.base", "Index"): ("pandas", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"): ("pandas", "RangeIndex"),
    ("pandas.core.indexes.multi", "MultiIndex"): ("pandas", "MultiIndex"),
    ("pandas.core.indexes.category", "CategoricalIndex"): ("pandas", "CategoricalIndex"),
    ("pandas.core.indexes.datetimes", "DatetimeIndex"): ("pandas", "DatetimeIndex"),
    ("pandas.core.indexes.timedeltas", "TimedeltaIndex"): ("pandas", "TimedeltaIndex"),
    ("pandas.core.indexes.period", "PeriodIndex"): ("pandas", "PeriodIndex"),
    ("pandas.core.indexes.interval", "IntervalIndex"): ("pandas", "IntervalIndex"),
    ("pandas.core.arrays.categorical", "Categorical"): ("pandas", "Categorical"),
    ("pandas._libs.interval", "Interval"): ("pandas", "Interval"),
    ("pandas._libs.tslibs.period", "Period"): ("pandas", "Period"),
    ("pandas._libs.missing", "NA"): ("pandas", "NA"),
    ("pandas._libs.tslibs.offsets", "DateOffset"): ("pandas", "DateOffset"),
    ("pandas.core.dtypes.dtypes", "ArrowDtype"): ("pandas", "ArrowDtype"),
    ("pandas.core.dtypes.dtypes", "CategoricalDtype"): ("pandas", "CategoricalDtype"),
    ("pandas.core.dtypes.dtypes", "DatetimeTZDtype"): ("pandas", "DatetimeTZDtype"),
    ("pandas.core.dtypes.dtypes", "IntervalDtype"): ("pandas", "IntervalDtype"),
    ("pandas.core.dtypes.dtypes", "PeriodDtype"): ("pandas", "PeriodDtype"),
    ("pandas.core.dtypes.dtypes", "SparseDtype"): ("pandas", "SparseDtype"),
    ("pandas.core.arrays.boolean", "BooleanDtype"): ("pandas", "BooleanDtype"),
    ("pandas.core.arrays.string_", "StringDtype"): ("pandas", "StringDtype"),
    ("pandas.core.arrays.floating", "Float32Dtype"): ("pandas", "Float32Dtype"),
    ("pandas.core.arrays.floating", "Float64Dtype"): ("pandas", "Float64Dtype"),
    ("pandas.core.arrays.integer", "Int8Dtype"): ("pandas", "Int8Dtype"),
    ("pandas.core.arrays.integer", "Int16Dtype"): ("pandas", "Int16Dtype"),
    ("pandas.core.arrays.integer", "Int32Dtype"): ("pandas", "Int32Dtype"),
    ("pandas.core.arrays.integer", "Int64Dtype"): ("pandas", "Int64Dtype"),
    ("pandas.core.arrays.integer", "UInt8Dtype"): ("pandas", "UInt8Dtype"),
    ("pandas.core.arrays.integer", "UInt16Dtype"): ("pandas", "UInt16Dtype"),
    ("pandas.core.arrays.integer", "UInt32Dtype"): ("pandas", "UInt32Dtype"),
    ("pandas.core.arrays.integer", "UInt64Dtype"): ("pandas", "UInt64Dtype"),
    ("pandas.core.arrays.arrow.array", "ArrowExtensionArray"): ("pandas.arrays", "ArrowExtensionArray"),
    ("pandas.core.arrays.string_arrow", "ArrowStringArray"): ("pandas.arrays", "ArrowStringArray"),
    ("pandas.core.arrays.boolean", "BooleanArray"): ("pandas.arrays", "BooleanArray"),
    ("pandas.core.arrays.datetimes", "DatetimeArray"): ("pandas.arrays", "DatetimeArray"),
    ("pandas.core.arrays.floating", "FloatingArray"): ("pandas.arrays", "FloatingArray"),
    ("pandas.core.arrays.integer", "IntegerArray"): ("pandas.arrays", "IntegerArray"),
    ("pandas.core.arrays.interval", "IntervalArray"): ("pandas.arrays", "IntervalArray"),
    ("pandas.core.arrays.numpy_", "NumpyExtensionArray"): ("pandas.arrays", "NumpyExtensionArray"),
    ("pandas.core.arrays.period", "PeriodArray"): ("pandas.arrays", "PeriodArray"),
    ("pandas.core.arrays.sparse.array", "SparseArray"): ("pandas.arrays", "SparseArray"),
    ("pandas.core.arrays.string_", "StringArray"): ("pandas.arrays", "StringArray"),
    ("pandas.core.arrays.timedeltas", "TimedeltaArray"): ("pandas.arrays", "TimedeltaArray"),
    # names pandas removed (the renames of pandas.compat.pickle_compat)
    ("pandas.core.internals.blocks", "new_block"): ("pandas._libs.internals", "_unpickle_block"),
    ("pandas._libs.tslibs.nattype", "__nat_unpickle"): ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "UInt64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas", "Index"),
    ("pandas.core.arrays.sparse.dtype", "SparseDtype"): ("pandas", "SparseDtype"),
    # pandas 0.x module paths that pandas 2.2's read_pickle still maps (pandas 3's no longer
    # does): mapped on every version, since they name nothing the list does not allow.
    # (pandas 2.2 also maps FrozenList, Timestamp and SparseSeries, which are not on the list.)
    ("pandas.core.base", "FrozenNDArray"): ("numpy", "ndarray"),
    ("pandas.core.indexes.frozen", "FrozenNDArray"): ("numpy", "ndarray"),
    ("pandas.core.series", "TimeSeries"): ("pandas", "Series"),
    ("pandas.core.categorical", "Categorical"): ("pandas", "Categorical"),
    ("pandas.core.sparse.array", "SparseArray"): ("pandas.arrays", "SparseArray"),
    ("pandas.sparse.array", "SparseArray"): ("pandas.arrays", "SparseArray"),
    ("pandas._sparse", "BlockIndex"): ("pandas._libs.sparse", "BlockIndex"),
    ("pandas._period", "Period"): ("pandas", "Period"),
    ("pandas._libs.period", "Period"): ("pandas", "Period"),
    ("pandas.tslib", "__nat_unpickle"): ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas._libs.tslib", "__nat_unpickle"): ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas.indexes.base", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.indexes.base", "Index"): ("pandas", "Index"),
    ("pandas.indexes.numeric", "Int64Index"): ("pandas", "Index"),
    ("pandas.indexes.numeric", "Float64Index"): ("pandas", "Index"),
    ("pandas.indexes.range", "RangeIndex"): ("pandas", "RangeIndex"),
    ("pandas.indexes.multi", "MultiIndex"): ("pandas", "MultiIndex"),
    ("pandas.tseries.index", "_new_DatetimeIndex"): ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
    ("pandas.tseries.index", "DatetimeIndex"): ("pandas", "DatetimeIndex"),
    ("pandas.tseries.period", "PeriodIndex"): ("pandas", "PeriodIndex"),
    ("pandas.tseries.tdi", "TimedeltaIndex"): ("pandas", "TimedeltaIndex"),
}

#: Allowed names that only newer versions have: {(module, name): (library, first version)}.
#: Under an older version they are simply absent, not mapped (there is nothing to map them
#: to): a payload naming one was written by the newer version and fails with an error that
#: says so.  The tests check each entry against the installed versions, both ways.
NEWER_ONLY: Mapping[tuple[str, str], tuple[str, str]] = {
    ("numpy._core._internal", "_convert_to_stringdtype_kwargs"): ("numpy", "2.0"),  # StringDType
    ("pandas.core.indexes.timedeltas", "_new_TimedeltaIndex"): ("pandas", "3.0"),
    **{
        ("pandas._libs.tslibs.offsets", name): ("pandas", "3.0")
        for name in _names("BHalfYearBegin BHalfYearEnd HalfYearBegin HalfYearEnd")
    },
}
