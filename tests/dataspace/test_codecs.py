"""zdumps/zloads/compress/decompress and the payload codecs."""

import pickle
import zlib

import numpy as np
import pandas as pd
import pytest

from decisionengine.framework.dataspace import codecs
from decisionengine.framework.dataspace.datablock import compress, decompress, zdumps, zloads

SAMPLES = [
    None,
    {"a": 1, "b": [1, 2, 3]},
    np.arange(100).reshape(10, 10),
    pd.DataFrame({"x": range(50), "y": np.linspace(0, 1, 50), "s": ["r"] * 50}),
    "text",
    b"\x80bytes",
]


def _equal(a, b):
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_zdumps_writes_the_reference_format(obj):
    blob = zdumps(obj)
    # What the HEPCloud Decision Engine reads: a zlib stream of a highest-protocol pickle.
    _equal(pickle.loads(zlib.decompress(blob)), obj)
    _equal(zloads(blob), obj)


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
@pytest.mark.parametrize("protocol", [0, 2, 4, pickle.HIGHEST_PROTOCOL])
def test_zloads_reads_plain_pickles(obj, protocol):
    _equal(zloads(pickle.dumps(obj, protocol)), obj)


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
@pytest.mark.parametrize("level", [1, 6, 9])
def test_zloads_reads_zlib_pickles_of_any_level(obj, level):
    _equal(zloads(zlib.compress(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), level)), obj)


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_zloads_reads_zstandard(obj):
    blob = codecs.encode(obj, "zstd")
    assert blob[:4] == codecs.ZstdCodec.MAGIC
    _equal(zloads(blob), obj)


def test_codecs_identify_their_own_output():
    raw = codecs.pickle_bytes({"k": list(range(100))})
    for name in ("zstd", "zlib", "pickle"):
        assert codecs.identify(codecs.get(name).encode(raw)).name == name


def test_unknown_codec_is_named():
    with pytest.raises(ValueError, match="unknown payload codec 'lz5'"):
        codecs.get("lz5")


def test_zloads_of_garbage_raises():
    with pytest.raises(Exception):
        zloads(b"\x28\xb5\x2f\xfd not really zstd")


def test_compress_and_decompress_are_the_reference_text_helpers():
    # str(obj), latin-1, zlib level 9: text round-trips, anything else comes back as its str()
    assert compress("hello world") == zlib.compress(b"hello world", 9)
    assert decompress(compress("hello world")) == "hello world"
    assert decompress(compress("caf\xe9")) == "caf\xe9"
    assert decompress(compress(b"plain bytes")) == "b'plain bytes'"
    assert decompress(compress({"a": 1})) == "{'a': 1}"
