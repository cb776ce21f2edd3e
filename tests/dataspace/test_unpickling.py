"""The restricted unpickler: everything a product can hold reads back; nothing else runs.

* every sample of ``decisionengine/testing/pickle_matrix.py`` (numpy, pandas, pyarrow and
  standard-library values of every dtype) with every protocol reads back as
  ``pickle.loads`` reads it, and every global their pickles name is on the allow-list;
* payloads written by pandas 1.5.3 / numpy 1.26 and pandas 2.2.3 / numpy 2.0 (what the
  reference Decision Engine and earlier installations stored; ``data/README.txt``) read
  back as ``pandas.read_pickle`` reads them;
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


@pytest.mark.parametrize("protocol", pickle_matrix.PROTOCOLS)
def test_every_sample_reads_back(protocol):
    failures = {}
    for name, value in SAMPLES.items():
        raw = pickle.dumps(value, protocol)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no DeprecationWarning from old numpy names either
                ours = unpickling.loads(raw)
            same_as_pickle_loads(raw, ours)
        except Exception as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    assert failures == {}


@pytest.mark.parametrize("codec", ["zstd", "zlib", "pickle"])
def test_zloads_reads_every_sample_in_every_codec(codec):
    for value in SAMPLES.values():
        raw = codecs.pickle_bytes(value)
        same_as_pickle_loads(raw, zloads(codecs.get(codec).encode(raw)))


def test_every_global_the_matrix_names_is_allowed():
    found, unreadable = pickle_matrix.collect(SAMPLES)
    assert unreadable == {}
    refused = {}
    for module, name in found:
        try:
            unpickling.DEFAULT_POLICY.find(module, name)
        except UntrustedPayloadError as exc:
            refused[f"{module}.{name}"] = str(exc)
    assert refused == {}


def test_every_allowed_name_exists_here():
    """No typo in the list: each name resolves (pytz only where it is installed)."""
    missing = []
    for module, names in allowlist.ALLOWED_GLOBALS.items():
        if module == "pytz":
            continue
        for name in names:
            try:
                unpickling.DEFAULT_POLICY.find(module, name)
            except Exception as exc:
                missing.append(f"{module}.{name}: {exc}")
    assert missing == []


def _pandas_renames() -> dict:
    compat = pytest.importorskip("pandas.compat.pickle_compat")
    return getattr(compat, "_class_locations_map", {})


def test_older_names_admit_nothing_new():
    """Each older name maps to an allowed name: where the old name still resolves here it
    is the very same object, except for pandas' own pickle renames, which map to what
    pandas itself maps them to."""
    allowed = {(module, name) for module, names in allowlist.ALLOWED_GLOBALS.items() for name in names}
    pandas_renames = _pandas_renames()
    for old, target in allowlist.OLDER_NAMES.items():
        assert target in allowed, old
        if old in pandas_renames:
            assert unpickling._import(*target) is unpickling._import(*pandas_renames[old]), old
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                found = unpickling._import(*old)
        except (ImportError, AttributeError):
            continue  # gone from this version: that is why it is mapped
        assert found is unpickling._import(*target), old


def test_pandas_own_renames_are_covered():
    for old in _pandas_renames():
        assert old in allowlist.OLDER_NAMES, old


# -- data written by older libraries -----------------------------------------------------------


def _archive(name: str) -> dict:
    return unpickling.loads(zlib.decompress((DATA / name).read_bytes()))


@pytest.mark.parametrize(
    "archive", ["payloads-pandas-1.5.3-numpy-1.26.4.zlib", "payloads-pandas-2.2.3-numpy-2.0.2.zlib"]
)
def test_payloads_written_by_older_pandas_and_numpy_read_back(archive):
    """What the reference Decision Engine stored (zlib level 9 of protocol 2, 4 or 5
    pickles made by pandas 1.5 / numpy 1.26, or pandas 2.2 / numpy 2.0) reads back as
    ``pandas.read_pickle`` (pandas' own compatibility unpickler) reads it."""
    contents = _archive(archive)
    assert len(contents["payloads"]) > 500
    failures = {}
    for key, blob in contents["payloads"].items():
        raw = zlib.decompress(blob)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = pd.read_pickle(io.BytesIO(raw))
        except ModuleNotFoundError as exc:
            assert exc.name == "pytz", key  # pandas < 3 stored time zones as pytz objects; not installed
            with pytest.raises(ModuleNotFoundError):
                zloads(blob)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                ours = zloads(blob)
            assert pickle.dumps(ours, 5) == pickle.dumps(expected, 5)
        except Exception as exc:
            failures[key] = f"{type(exc).__name__}: {exc}"
    assert failures == {}


def test_older_payloads_include_what_plain_pickle_cannot_read():
    """pandas 1.5's Int64Index and NaT pickles fail with pickle.loads under pandas 3; the
    allow-list's older names read them."""
    payloads_ = _archive("payloads-pandas-1.5.3-numpy-1.26.4.zlib")["payloads"]
    expected = {"DataFrame[int index]@5": pd.Index([0, 2]), "DataFrame[float index]@2": pd.Index([0.5, 1.5])}
    for key, index in expected.items():
        with pytest.raises(ModuleNotFoundError, match=r"pandas\.core\.indexes\.numeric"), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pickle.loads(zlib.decompress(payloads_[key]))
        pd.testing.assert_index_equal(zloads(payloads_[key]).index, index)
    with pytest.raises(AttributeError, match="__nat_unpickle"):
        pickle.loads(zlib.decompress(payloads_["NaT@4"]))
    assert zloads(payloads_["NaT@4"]) is pd.NaT


def test_numpy_1_module_paths_and_protocol_2():
    """A protocol-2 pickle naming numpy 1's ``numpy.core.multiarray`` and pandas 1's
    ``pandas.core.frame``, as zlib (reference zdumps) and plain: reads without warnings."""
    frame = pd.DataFrame({"f": np.linspace(0, 1, 5), "i": np.arange(5), "s": list("abcde")})
    raw = pickle.dumps(frame, 2)
    old = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    old = old.replace(b"cpandas\nDataFrame\n", b"cpandas.core.frame\nDataFrame\n")
    assert b"numpy.core.multiarray" in old and b"pandas.core.frame" in old
    for blob in (zlib.compress(old, 9), old):
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
