"""The operator catalogue is generated from the registries and committed: they must agree."""

from pathlib import Path

from compress_bench.compressors import COMPRESSORS, QUANTIZERS
from compress_bench.docs import generate

PAGE = Path(__file__).resolve().parents[1] / "docs" / "compressors.md"


def test_committed_catalogue_is_up_to_date():
    assert PAGE.read_text() == generate(), "run `make docs` and commit docs/compressors.md"


def test_catalogue_lists_every_registered_operator():
    text = generate()
    for name in COMPRESSORS:
        assert f"`compressor={name}`" in text
    for name in QUANTIZERS:
        assert f"`quantizer={name}`" in text
