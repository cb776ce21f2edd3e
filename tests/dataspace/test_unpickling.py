"""The restricted unpickler: everything a product can hold reads back; nothing else runs.

* every sample of ``decisionengine/testing/pickle_matrix.py`` (numpy, pandas, pyarrow and
  standard-library values of every dtype) with every protocol reads back as
  ``pickle.loads`` reads it, and every global their pickles name is on the allow-list;
* payloads written by pandas 1.5.3 / numpy 1.26 and pandas 2.2.3 / numpy 2.0 (what the
  reference Decision Engine and earlier installations stored; ``data/README.txt``) read
  back as ``pandas.read_pickle`` reads them; those of pandas 3.1 / NumPy 2.4 too, or, under
  pandas 2 and NumPy 1, fail with an error saying that another version wrote them;
* all of it on both version sets CI runs (pandas 2.2 / NumPy 1.26 and pandas 3 / NumPy 2):
  what is true of one version only is checked as what is true of the installed one;
* a battery of hostile pickles is refused with an error naming what they asked for, and
  none has any effect;
* ``trusted_modules`` lets the classes of a listed module through, nothing else of it.
"""

from __future__ import annotations

import copyreg
import io
import os
import pathlib
import pickle
import pickletools
import re
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest

from decisionengine.framework.dataspace import allowlist, codecs, unpickling
from decisionengine.framework.dataspace.datablock import zdumps, zloads
from decisionengine.framework.dataspace.dataspace import DataSpaceError, UntrustedPayloadError
from decisionengine.framework.dataspace.unpickling import UnpicklePolicy
from decisionengine.testing import pickle_matrix
from tests.fixtures import payloads
from tests.fixtures.trusted_payloads import Level, Outer, Reading, Snapshot

DATA = pathlib.Path(__file__).parent / "data"
REPO = pathlib.Path(__file__).resolve().parents[2]
TRUSTED = "tests.fixtures.trusted_payloads"
SAMPLES, SKIPPED = pickle_matrix.samples()
PANDAS_3 = "payloads-pandas-3.1.1-numpy-2.4.6.zlib"


def release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string: "2.2.3" -> (2, 2), "3.0.0rc1" -> (3, 0)."""
    found = re.match(r"(\d+)\.(\d+)", version)
    assert found, version
    return int(found[1]), int(found[2])


INSTALLED = {"numpy": release(np.__version__), "pandas": release(pd.__version__)}
PANDAS_MAJOR, NUMPY_MAJOR = INSTALLED["pandas"][0], INSTALLED["numpy"][0]


def same_as_pickle_loads(raw: bytes, ours: object) -> None:
    """``ours`` is what an unrestricted ``pickle.loads`` makes of ``raw`` (compared by
    pickling both again: exact for every type, NaN and NaT included)."""
    assert pickle.dumps(ours, 5) == pickle.dumps(pickle.loads(raw), 5)


# -- the matrix ------------------------------------------------------------------------------


def test_the_matrix_builds_here():
    """Every sample exists in this environment (pytz ones only where pytz is installed, NumPy
    StringDType only on NumPy 2)."""
    assert SKIPPED == {}
    assert len(SAMPLES) > 150
    assert ("ndarray[StringDType]" in SAMPLES) is (NUMPY_MAJOR >= 2)


@pytest.mark.parametrize("protocol", pickle_matrix.PROTOCOLS)
def test_every_sample_reads_back(protocol):
    """Each sample the installed libraries can pickle with ``protocol`` reads back; the ones
    they cannot pickle at all (``pickle.dumps`` raises: pandas 2's DateOffset at protocols 0
    and 1) are exactly those :func:`pickle_matrix.cannot_pickle` knows for these versions."""
    failures, unpicklable = {}, set()
    for name, value in SAMPLES.items():
        try:
            raw = pickle.dumps(value, protocol)
        except Exception:
            unpicklable.add(f"{name}@{protocol}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no DeprecationWarning from old numpy names either
                ours = unpickling.loads(raw)
            same_as_pickle_loads(raw, ours)
        except Exception as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    assert failures == {}
    assert unpicklable == {where for where in pickle_matrix.cannot_pickle() if where.endswith(f"@{protocol}")}


@pytest.mark.parametrize("codec", ["zstd", "zlib", "pickle"])
def test_zloads_reads_every_sample_in_every_codec(codec):
    for value in SAMPLES.values():
        raw = codecs.pickle_bytes(value)
        same_as_pickle_loads(raw, zloads(codecs.get(codec).encode(raw)))


def test_every_global_the_matrix_names_is_allowed():
    found, unreadable = pickle_matrix.collect(SAMPLES)
    assert unreadable.keys() == pickle_matrix.cannot_pickle().keys()
    refused = {}
    for module, name in found:
        try:
            unpickling.DEFAULT_POLICY.find(module, name)
        except UntrustedPayloadError as exc:
            refused[f"{module}.{name}"] = str(exc)
    assert refused == {}


def _installed(library: str) -> bool:
    try:
        __import__(library)
    except ImportError:
        return False
    return True


def test_every_allowed_name_exists_here():
    """No typo in the list: each name resolves here, under its own name or one of its older
    names (NumPy 1.26 has NumPy 2's ``numpy._core.numeric._frombuffer`` as
    ``numpy.core.numeric._frombuffer``).  The names only newer versions have
    (``allowlist.NEWER_ONLY``) resolve exactly where the installed version is that new, and
    elsewhere fail with an error naming that version (not a refusal: they are allowed).
    pytz, where it is not installed, fails with an error saying so."""
    missing, unexpected, newer_only_here = [], [], []
    for module, names in allowlist.ALLOWED_GLOBALS.items():
        for name in names:
            library, since = allowlist.NEWER_ONLY.get((module, name), (module.partition(".")[0], None))
            if not _installed(library):
                with pytest.raises(pickle.UnpicklingError, match=f"{library}, which is not installed here"):
                    unpickling.DEFAULT_POLICY.find(module, name)
                continue
            exists_here = since is None or INSTALLED[library] >= release(since)
            try:
                unpickling.DEFAULT_POLICY.find(module, name)
            except pickle.UnpicklingError as exc:
                assert not isinstance(exc, UntrustedPayloadError), exc
                if exists_here:
                    missing.append(f"{module}.{name}: {exc}")
                else:
                    assert f"does not have (it exists from {library} {since} on)" in str(exc)
                    newer_only_here.append(f"{module}.{name}")
            else:
                if not exists_here:
                    unexpected.append(
                        f"{module}.{name}: exists in {library} {INSTALLED[library]}, not only from {since}"
                    )
    assert missing == []
    assert unexpected == []
    assert bool(newer_only_here) is (PANDAS_MAJOR < 3 or NUMPY_MAJOR < 2)


def _pandas_renames() -> dict:
    compat = pytest.importorskip("pandas.compat.pickle_compat")
    return getattr(compat, "_class_locations_map", {})


def test_older_names_admit_nothing_new():
    """Each older name maps to an allowed name: where both resolve here they are the very
    same object, except for pandas' own pickle renames, which map to what pandas itself
    maps them to.  Where only the older name resolves (the installed version is the older
    one: NumPy 1's ``numpy.core.numeric._frombuffer``, pandas 2's ``__nat_unpickle``), it
    stands for the allowed name and must be that name's function or class of this version:
    same library, same name up to leading underscores."""
    allowed = {(module, name) for module, names in allowlist.ALLOWED_GLOBALS.items() for name in names}
    pandas_renames = _pandas_renames()
    standing_in = set()
    for old, target in allowlist.OLDER_NAMES.items():
        assert target in allowed, old
        here = unpickling.import_allowed(*target)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                found = unpickling._import(*old)
        except (ImportError, AttributeError):
            found = None  # gone from this version: that is why it is mapped
        try:
            unpickling._import(*target)
        except (ImportError, AttributeError):
            if found is None:
                continue  # neither name here: another of the old names stands in (checked on its own)
            assert found is here, old  # the installed version has the allowed object under the old name only
            assert here.__module__.partition(".")[0] == target[0].partition(".")[0], old
            assert here.__name__.lstrip("_") == target[1].rpartition(".")[2].lstrip("_"), old
            standing_in.add(old)
            continue
        if old in pandas_renames:
            assert here is unpickling._import(*pandas_renames[old]), old
        elif found is not None:
            assert found is here, old
    expected = set()
    if NUMPY_MAJOR < 2:
        expected.add(("numpy.core.numeric", "_frombuffer"))
    if PANDAS_MAJOR < 3:
        expected.add(("pandas._libs.tslibs.nattype", "__nat_unpickle"))
    assert standing_in == expected


def _allowed_objects() -> dict[int, object]:
    """{id: object} of everything an allowed name stands for in the installed versions."""
    found = {}
    for module, names in allowlist.ALLOWED_GLOBALS.items():
        for name in names:
            try:
                value = unpickling.import_allowed(module, name)
            except pickle.UnpicklingError:
                continue  # not in this version (NEWER_ONLY) or pytz not installed
            found[id(value)] = value
    return found


def test_pandas_own_renames_are_covered():
    """Every rename the installed pandas' ``read_pickle`` applies (pandas 2.2 still maps
    pandas 0.x module paths; pandas 3 only a few of pandas 1 and 2) is applied here too,
    when it leads to a data type the allow-list admits; one that leads elsewhere (pandas
    2.2's FrozenList, Timestamp as a class, SparseSeries that no longer exists) stays refused."""
    allowed = _allowed_objects()
    covered = refused = 0
    for old, new in _pandas_renames().items():
        try:
            target = unpickling._import(*new)
        except (ImportError, AttributeError):
            target = None
        if target is not None and id(target) in allowed:
            assert old in allowlist.OLDER_NAMES, old
            assert unpickling.DEFAULT_POLICY.find(*old) is target, old
            covered += 1
        else:
            with pytest.raises(UntrustedPayloadError):
                unpickling.DEFAULT_POLICY.find(*old)
            refused += 1
    assert covered >= 6
    assert refused == (3 if PANDAS_MAJOR < 3 else 0)


# -- data written by other versions ------------------------------------------------------------


def _archive(name: str) -> dict:
    return unpickling.loads(zlib.decompress((DATA / name).read_bytes()))


def _sample(key: str) -> object:
    """The sample a payload of an archive was made from, as the installed libraries build it."""
    return SAMPLES[key.rpartition("@")[0]]


class NumPy2NamesInNumPy1(pickle.Unpickler):
    """Plain, unrestricted unpickling that finds NumPy 2's ``numpy._core.numeric`` under
    NumPy 1's name for it: how ``pickle.loads`` would read NumPy 2's protocol-5 arrays if
    NumPy 1.26 had that name (it has stubs for ``numpy._core.multiarray`` only).  The
    reference for those payloads under NumPy 1 (trusted input only)."""

    def find_class(self, module: str, name: str) -> object:
        return super().find_class("numpy.core.numeric" if module == "numpy._core.numeric" else module, name)


@pytest.mark.parametrize(
    "archive", ["payloads-pandas-1.5.3-numpy-1.26.4.zlib", "payloads-pandas-2.2.3-numpy-2.0.2.zlib"]
)
def test_payloads_written_by_older_pandas_and_numpy_read_back(archive):
    """What the reference Decision Engine stored (zlib level 9 of protocol 2, 4 or 5
    pickles made by pandas 1.5 / numpy 1.26, or pandas 2.2 / numpy 2.0) reads back as
    ``pandas.read_pickle`` (pandas' own compatibility unpickler) reads it.  Under NumPy 1,
    where that cannot read NumPy 2's protocol-5 arrays (``numpy._core.numeric``), ours reads
    them as :class:`NumPy2NamesInNumPy1` does; NumPy 2's StringDType arrays, which NumPy 1
    cannot represent, fail with an error saying so."""
    contents = _archive(archive)
    assert len(contents["payloads"]) > 500
    failures, numpy_2_paths, numpy_2_only = {}, set(), set()
    for key, blob in contents["payloads"].items():
        raw = zlib.decompress(blob)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = pd.read_pickle(io.BytesIO(raw))
        except ModuleNotFoundError as exc:
            if exc.name == "pytz":  # pandas < 3 stored time zones as pytz objects; not installed
                with pytest.raises(pickle.UnpicklingError, match=r"pytz\._[pU].*, which is not installed here"):
                    zloads(blob)
                continue
            assert (exc.name, NUMPY_MAJOR) == ("numpy._core.numeric", 1), key
            expected = NumPy2NamesInNumPy1(io.BytesIO(raw)).load()
            numpy_2_paths.add(key)
        except AttributeError as exc:
            assert (key.startswith("ndarray[StringDType]@"), NUMPY_MAJOR) == (True, 1), (key, exc)
            with pytest.raises(pickle.UnpicklingError, match=r"does not have \(it exists from numpy 2\.0 on\)"):
                zloads(blob)
            numpy_2_only.add(key)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                ours = zloads(blob)
            assert pickle.dumps(ours, 5) == pickle.dumps(expected, 5)
        except Exception as exc:
            failures[key] = f"{type(exc).__name__}: {exc}"
    assert failures == {}
    read_by_numpy_1 = contents["versions"]["numpy"].startswith("2.") and NUMPY_MAJOR < 2
    assert bool(numpy_2_paths) is read_by_numpy_1
    assert bool(numpy_2_only) is read_by_numpy_1


PANDAS_3_ONLY = {"Series[str (default)]", "Series[string[python]]", "Index[str]", "DataFrame[str index]"}
PANDAS_3_ONLY |= {"Series[datetime64[ns]]", "offsets.HalfYearBegin"}


def test_payloads_written_by_pandas_3_read_back_or_fail_saying_why():
    """Payloads of pandas 3.1 / NumPy 2.4 (a few samples: ``data/README.txt``) read back
    under pandas 3 as ``pandas.read_pickle`` reads them.  Under pandas 2 and NumPy 1 those
    that only renames stand between (NaT, NumPy 2's protocol-5 arrays) read back as the
    sample the installed libraries build; the others, which pandas 2 cannot represent (its
    str dtype, microsecond datetimes, the HalfYear offsets) or NumPy 1 (StringDType), fail
    with a ``pickle.UnpicklingError`` saying that another version wrote them, never a raw
    TypeError from a constructor of the installed version, and never a refusal."""
    contents = _archive(PANDAS_3)
    assert contents["versions"]["pandas"] == "3.1.1"
    failures, refused = {}, {}
    for key, blob in contents["payloads"].items():
        raw = zlib.decompress(blob)
        try:
            ours = zloads(blob)
        except pickle.UnpicklingError as exc:
            assert not isinstance(exc, UntrustedPayloadError), key
            assert "a DataSpace holds the products of one pandas major version" in str(exc), key
            refused[key.rpartition("@")[0]] = str(exc)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = pd.read_pickle(io.BytesIO(raw))
        except Exception:
            assert PANDAS_MAJOR < 3 or NUMPY_MAJOR < 2, key
            expected = _sample(key)
        if pickle.dumps(ours, 5) != pickle.dumps(expected, 5):
            failures[key] = f"{ours!r} != {expected!r}"
    assert failures == {}
    expected_refused = set()
    if PANDAS_MAJOR < 3:
        expected_refused |= PANDAS_3_ONLY
    if NUMPY_MAJOR < 2:
        expected_refused.add("ndarray[StringDType]")
    assert refused.keys() == expected_refused
    if PANDAS_MAJOR < 3:
        assert "TypeError: StringDtype.__init__()" in refused["Series[str (default)]"]
        assert f"the installed pandas {pd.__version__}, NumPy" in refused["Series[str (default)]"]
        assert "cannot rebuild the payload" in refused["Series[str (default)]"]
        assert "which the installed pandas" in refused["offsets.HalfYearBegin"]
        assert "(it exists from pandas 3.0 on)" in refused["offsets.HalfYearBegin"]


def _is_nat(value: object) -> None:
    assert value is pd.NaT


#: Payloads plain ``pickle.loads`` cannot read on some version, and ours reads on every one:
#: {name: (archive, payload, (whether plain pickle fails here, with what), check of the value)}
ONLY_OURS_READ = {
    "pandas 1.5's Int64Index (gone in pandas 2)": (
        "payloads-pandas-1.5.3-numpy-1.26.4.zlib",
        "DataFrame[int index]@5",
        (True, ModuleNotFoundError, r"pandas\.core\.indexes\.numeric"),
        lambda value: pd.testing.assert_index_equal(value.index, pd.Index([0, 2])),
    ),
    "pandas 1.5's Float64Index at protocol 2": (
        "payloads-pandas-1.5.3-numpy-1.26.4.zlib",
        "DataFrame[float index]@2",
        (True, ModuleNotFoundError, r"pandas\.core\.indexes\.numeric"),
        lambda value: pd.testing.assert_index_equal(value.index, pd.Index([0.5, 1.5])),
    ),
    "pandas 1.5's NaT (__nat_unpickle, renamed in pandas 3)": (
        "payloads-pandas-1.5.3-numpy-1.26.4.zlib",
        "NaT@4",
        (PANDAS_MAJOR >= 3, AttributeError, "__nat_unpickle"),
        _is_nat,
    ),
    "pandas 3's NaT (_nat_unpickle, which pandas 2 calls __nat_unpickle)": (
        PANDAS_3,
        "NaT@4",
        (PANDAS_MAJOR < 3, AttributeError, "_nat_unpickle"),
        _is_nat,
    ),
    "NumPy 2's protocol-5 array (numpy._core.numeric, numpy.core.numeric in NumPy 1)": (
        "payloads-pandas-2.2.3-numpy-2.0.2.zlib",
        "ndarray[f8]@5",
        (NUMPY_MAJOR < 2, ModuleNotFoundError, r"numpy\._core\.numeric"),
        lambda value: np.testing.assert_array_equal(value, np.zeros(3)),
    ),
}


@pytest.mark.parametrize("case", list(ONLY_OURS_READ))
def test_other_versions_payloads_that_plain_pickle_cannot_read(case):
    """What plain ``pickle.loads`` fails on depends on the installed versions (pandas 1.5's
    NaT reads under pandas 2, not 3; pandas 3's the other way round); the unpickler reads
    each one on every version, through the allow-list's older names and their renames."""
    archive, key, (plain_fails, error, message), check = ONLY_OURS_READ[case]
    blob = _archive(archive)["payloads"][key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if plain_fails:
            with pytest.raises(error, match=message):
                pickle.loads(zlib.decompress(blob))
        else:
            check(pickle.loads(zlib.decompress(blob)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(zloads(blob))


def test_some_payloads_only_ours_read_on_each_version():
    """On each version set at least three of the cases above are ones plain pickle fails on."""
    assert sum(case[2][0] for case in ONLY_OURS_READ.values()) >= 3


def _short_unicode(text: str) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text.encode()


#: (NumPy 1 / pandas 2 spelling, NumPy 2 / pandas 3 spelling) of the same globals, as
#: protocol 2 (GLOBAL opcodes) and protocol 5 (module strings for STACK_GLOBAL) write them
SPELLINGS = {
    2: [
        (b"cnumpy.core.multiarray\n", b"cnumpy._core.multiarray\n"),
        (b"cpandas.core.frame\nDataFrame\n", b"cpandas\nDataFrame\n"),
        (b"cpandas.core.indexes.range\nRangeIndex\n", b"cpandas\nRangeIndex\n"),
    ],
    5: [(_short_unicode("numpy.core.numeric"), _short_unicode("numpy._core.numeric"))],
}


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("writer", ["NumPy 1 and pandas 2", "NumPy 2 and pandas 3"])
def test_module_paths_of_either_major_version(protocol, writer):
    """A payload naming the module paths NumPy 1 and pandas 2 write (``numpy.core``,
    ``pandas.core.frame``) or those NumPy 2 and pandas 3 write (``numpy._core``,
    ``pandas``) reads on either version, without warnings, as zlib (the reference's
    ``zdumps``) and plain: on each version set one of the two is the other version's."""
    frame = pd.DataFrame({"f": np.linspace(0, 1, 5), "i": np.arange(5)})
    raw = pickle.dumps(frame, protocol)
    older = writer.startswith("NumPy 1")
    for old, new in SPELLINGS[protocol]:
        raw = raw.replace(new, old) if older else raw.replace(old, new)
    raw = pickletools.optimize(raw)  # frames the respelled opcodes anew (protocol 5)
    for old, new in SPELLINGS[protocol]:
        assert (old if older else new) in raw and (new if older else old) not in raw
    for blob in (zlib.compress(raw, 9), raw):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pd.testing.assert_frame_equal(zloads(blob), frame)
    pd.testing.assert_frame_equal(zloads(zdumps(frame)), frame)


# -- hostile payloads --------------------------------------------------------------------------


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a refused payload ran code"


@pytest.mark.parametrize("name", list(payloads.exploits(pathlib.Path("marker"), pathlib.Path("inner"))))
def test_hostile_payloads_are_refused_and_have_no_effect(name, marker, tmp_path):
    inner = tmp_path / "inner.pickle"
    inner.write_bytes(payloads.os_system(marker))
    raw, refused = payloads.exploits(marker, inner)[name]
    for blob in (raw, zlib.compress(raw), payloads.zstd(raw)):
        with pytest.raises(UntrustedPayloadError) as info:
            zloads(blob)
        assert info.value.refused == refused
        assert refused in str(info.value)
        assert "dataspace.trusted_modules" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("name", list(payloads.checked_callable_exploits()))
def test_callables_that_take_callables_are_checked(name, marker):
    raw, refused = payloads.checked_callable_exploits()[name]
    with pytest.raises(UntrustedPayloadError) as info:
        unpickling.loads(raw)
    assert info.value.refused == refused


def test_the_checked_callables_still_do_their_job():
    from collections import defaultdict

    counts = defaultdict(list, a=[1])
    assert unpickling.loads(pickle.dumps(counts, 2)) == counts
    assert unpickling.loads(pickle.dumps(counts, 2)).default_factory is list
    assert unpickling.loads(pickle.dumps(b"\x00\xff", 2)) == b"\x00\xff"  # _codecs.encode
    frame = pd.DataFrame({"t": pd.date_range("2020", periods=2, tz="Europe/Paris")})
    pd.testing.assert_frame_equal(unpickling.loads(pickle.dumps(frame, 2)), frame)  # getattr(ZoneInfo, ...)
    pd.testing.assert_frame_equal(unpickling.loads(pickle.dumps(frame, 0)), frame)  # copyreg._reconstructor


def test_extension_registry_goes_through_the_allow_list(marker):
    """EXT opcodes name globals by number (copyreg's registry); they are looked up like any other."""
    copyreg.add_extension("posix", "system", 0x7EAD)
    try:
        raw = payloads.PROTO2 + b"\x83\xad\x7e" + payloads.opcodes((payloads.touch_command(marker),)) + b"R."
        with pytest.raises(UntrustedPayloadError, match=r"posix\.system"):
            unpickling.loads(raw)
    finally:
        copyreg.remove_extension("posix", "system", 0x7EAD)


@pytest.mark.parametrize("size", [3, 5000])  # short arrays: Arrow's full validation; long: our offsets check
@pytest.mark.parametrize(("slot", "offset"), [(-1, 10**6), (1, 10**6), (1, -5), (0, 3)])
def test_crafted_arrow_array_is_refused_before_it_is_read(size, slot, offset):
    """pyarrow trusts the offsets it is given (its cheap validation looks at the last one
    only); the unpickler checks them all."""
    pyarrow = pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"s": pd.array([f"v{i}" for i in range(size)], dtype="string[pyarrow]")})
    raw = pickle.dumps(frame, 5)
    offsets = pickle.loads(raw)["s"].array._pa_array.chunks[0].buffers()[1].to_pybytes()
    assert raw.count(offsets) == 1
    bad = np.frombuffer(offsets, dtype=np.int64).copy()  # large_string: int64 offsets
    bad[slot] = offset
    with pytest.raises((pickle.UnpicklingError, pyarrow.ArrowInvalid), match=r"(?i)offset"):
        unpickling.loads(raw.replace(offsets, bad.tobytes()))
    pd.testing.assert_frame_equal(unpickling.loads(raw), frame)


@pytest.mark.parametrize(
    ("payload", "refusal"),
    [
        (payloads.misplaced_block_frame(), "a pandas frame with a block placed at 3..3, outside its 1 columns"),
        (payloads.out_of_range_categorical(), "a pandas Categorical whose codes are outside its 3 categories"),
    ],
    ids=["frame block beyond its columns", "categorical code beyond its categories"],
)
def test_structures_that_break_the_reader_are_refused(tmp_path, payload, refusal):
    """Allowed types whose crafted internals make pandas write or read out of bounds when
    the value is used (before: "free(): invalid pointer", a segmentation fault).  Read in a
    child process, so that a reader that does crash cannot take the test run with it."""
    path = tmp_path / "payload"
    path.write_bytes(zlib.compress(payload))
    child = subprocess.run(
        [sys.executable, "-c", payloads.USE_PAYLOAD, str(path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout == f"refused: UnpicklingError {refusal}\n"


def test_valid_frames_and_categoricals_pass_the_checks():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [1, 2], "c": [3.0, 4.0], "k": pd.Categorical([None, "x"])})
    for protocol in (0, 2, 5):
        loaded = unpickling.loads(pickle.dumps(frame, protocol))
        pd.testing.assert_frame_equal(loaded, frame)
        assert type(loaded["k"].array) is pd.Categorical


def test_the_error():
    error = UntrustedPayloadError("posix.system", where="product 'jobs' of generation 3 of channel 'c'")
    assert isinstance(error, DataSpaceError) and isinstance(error, pickle.UnpicklingError)
    assert str(error).startswith("product 'jobs' of generation 3 of channel 'c' refers to posix.system")
    copy = pickle.loads(pickle.dumps(error))  # crosses process boundaries intact
    assert (copy.refused, copy.where, str(copy)) == (error.refused, error.where, str(error))


def test_refusals_are_not_cached():
    policy = UnpicklePolicy()
    for _ in range(2):
        with pytest.raises(UntrustedPayloadError):
            policy.find("posix", "system")
    assert ("posix", "system") not in policy._cache
    assert policy.find("pandas", "DataFrame") is pd.DataFrame
    assert policy._cache[("pandas", "DataFrame")] is pd.DataFrame


# -- trusted modules ---------------------------------------------------------------------------

OWN_VALUES = {
    "instance": Reading("site-a", 1.5),
    "enum member": Level.HIGH,
    "class method reduce": Snapshot([1, 2]),
    "nested class": Outer.Inner(3),
    "in a frame": pd.DataFrame({"r": [Reading("b", 2.0)], "level": [Level.LOW]}),
}


@pytest.mark.parametrize("name", list(OWN_VALUES))
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_classes_of_untrusted_modules_are_refused(name, protocol):
    with pytest.raises(UntrustedPayloadError) as info:
        unpickling.loads(pickle.dumps(OWN_VALUES[name], protocol))
    assert info.value.refused.startswith(TRUSTED + ".")


@pytest.mark.parametrize("name", list(OWN_VALUES))
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("trusted", [TRUSTED, "tests.fixtures"])
def test_trusted_modules_let_their_classes_through(name, protocol, trusted):
    value = OWN_VALUES[name]
    raw = pickle.dumps(value, protocol)
    same_as_pickle_loads(raw, unpickling.loads(raw, UnpicklePolicy([trusted])))


def test_only_classes_of_a_trusted_module_and_of_its_own(marker):
    policy = UnpicklePolicy([TRUSTED])
    command = payloads.touch_command(marker)
    refused = {
        "its functions": payloads.call(TRUSTED, "run_command", command),
        "what it imports": payloads.call(TRUSTED, "Popen", ["touch", str(marker)]),
        "a path through a module it imports": payloads.stack_call(TRUSTED, "os.system", command),
        "a method that is not a class method": payloads.stack_call(TRUSTED, "Reading.__init__", None),
    }
    for what, raw in refused.items():
        with pytest.raises(UntrustedPayloadError):
            unpickling.loads(raw, policy)
        assert not marker.exists(), what


def test_trusted_module_names_match_whole_components():
    assert UnpicklePolicy(["tests.fix"]).trusts("tests.fixtures.trusted_payloads") is False
    assert UnpicklePolicy(["tests.fixtures"]).trusts("tests.fixtures.trusted_payloads") is True
    assert UnpicklePolicy([TRUSTED]).trusts(TRUSTED) is True
    with pytest.raises(UntrustedPayloadError):
        unpickling.loads(pickle.dumps(Reading("a", 1.0)), UnpicklePolicy(["tests.fix"]))


@pytest.mark.parametrize(
    "name", ["os", "subprocess", "builtins", "numpy", "pandas.io.pickle", "pyarrow", "", "1abc", "a..b", "a.b-c", 3]
)
def test_modules_that_cannot_be_trusted(name):
    with pytest.raises(ValueError):
        UnpicklePolicy([name])


def test_trusted_modules_are_a_list_not_a_string():
    with pytest.raises(ValueError, match="not the string 'mymodule'"):
        UnpicklePolicy("mymodule")
