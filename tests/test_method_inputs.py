"""What a method needs from its operator is said in one message: DIANA with TopK names both
``lr`` and ``method.alpha`` at once (it used to ask for lr, then, once given, for alpha)."""

from __future__ import annotations

import pytest

from compress_bench.config import compose_config
from compress_bench.errors import ConfigError
from compress_bench.runner import build_run


def test_diana_with_a_biased_operator_names_everything_it_needs(mushrooms_dir):
    overrides = ("method=diana", "compressor=top_k", "rounds=2", f"data_dir={mushrooms_dir}")
    with pytest.raises(ConfigError) as err:
        build_run(compose_config(*overrides))
    text = str(err.value)
    assert "lr" in text and "method.alpha" in text, text
    # following the message is enough: the run builds
    run = build_run(compose_config(*overrides, "lr=0.1", "method.alpha=0.5"))
    assert run.method.alpha == 0.5
