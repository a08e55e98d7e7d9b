"""Property: no command line gives a traceback (issue 8).

Overrides are drawn from the config schema itself (the group options in conf/, the fields and
bounds of the dataclasses in compress_bench/config.py), valid and invalid: wrong types,
out-of-range numbers, nan/inf, unknown keys and options, malformed syntax. Every command runs
the CLI for at most a few rounds and must end either with exit 0 and a finished summary.json,
or with exit 2 and exactly one line on stderr. A new schema field or group option is drawn
without changing this file. ``make test-slow`` runs many more examples.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compress_bench.cli import main
from compress_bench.config import SCHEMAS, Config, config_groups, schema_fields

# Valid values are capped where the CLI's cost grows with them (the property is about
# errors, not about long runs); everything else is drawn over its whole declared range.
COST_CAPS = {
    "rounds": 3,
    "n_workers": 12,
    "log_every": 5,
    "steps": 3,
    "levels": 300,
    "n_samples": 400,
    "dim": 30,
}
FIXED = ("progress=false",)
MALFORMED = [
    "ratio",
    "=1",
    "ratio==0.2",
    "ratio=[1,",
    "compressor=",
    "~no_such_key",
    "+ratio=0.3",
    "ratio=0.2)",
    "no_such_key=1",
    "problem.no_such_key=1",
    "compressor=no_such_option",
    "quantizer=null",
    "seed='zero'",
    "lr=auto_",
    "hydra.run.dir=",
]
FINISHED = ("completed", "diverged")
_counter = itertools.count()


def _text() -> st.SearchStrategy[str]:
    return st.text(alphabet="abcxyz_0123456789", min_size=1, max_size=6)


def _number_text(value: float | int) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


def _valid(name: str, annotation, bounds) -> st.SearchStrategy[str]:
    """A value inside the field's type and bounds (capped where it costs time)."""
    base = typing.get_args(annotation)[0] if typing.get_origin(annotation) else annotation
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return st.sampled_from([m.name for m in base])
    if base is bool:
        return st.sampled_from(["true", "false"])
    low = (bounds or {}).get("gt") if (bounds or {}).get("gt") is not None else None
    low_inclusive = (bounds or {}).get("ge")
    high = (bounds or {}).get("le")
    if base is int:
        lo = int(low_inclusive if low_inclusive is not None else (low + 1 if low else 0))
        hi = min(int(high) if high is not None else 10**6, lo + COST_CAPS.get(name, 10**6))
        return st.integers(lo, hi).map(str)
    if base is float:
        lo = low_inclusive if low_inclusive is not None else (low if low is not None else -1e6)
        hi = high if high is not None else 1e6
        numbers = st.floats(lo, hi, exclude_min=low is not None, allow_nan=False)
        return numbers.map(_number_text)
    return _text()


def _invalid(annotation, bounds) -> st.SearchStrategy[str]:
    """A value of the wrong type, outside the bounds, or not finite."""
    options = [st.just("nan"), st.just("inf"), st.just("-inf"), _text().map(lambda t: f"x{t}")]
    bounds = bounds or {}
    for key, step in (("ge", -1), ("gt", 0), ("le", 1)):
        if bounds.get(key) is not None:
            edge = bounds[key]
            beyond = edge + step if key != "gt" else edge
            options.append(st.just(_number_text(beyond)))
    if "float" in str(annotation) or annotation is float:
        options.append(st.just("-1e308"))
    return st.one_of(options)


def _fields(schema) -> list[tuple[str, object, dict | None]]:
    return [f for f in schema_fields(schema) if f[1] is not typing.Any and f[0] != "name"]


def _valid_overrides(prefix: str, schema) -> st.SearchStrategy[list[str]]:
    """Up to two of the schema's fields, each set to a valid value."""
    fields = _fields(schema)
    if not fields:
        return st.just([])

    def one(field) -> st.SearchStrategy[str]:
        return _valid(*field).map(lambda v: f"{prefix}{field[0]}={v}")

    return st.lists(st.sampled_from(fields), max_size=2, unique_by=lambda f: f[0]).flatmap(
        lambda chosen: st.tuples(*[one(f) for f in chosen]).map(list)
    )


def _one_invalid(schemas: list[tuple[str, type]]) -> st.SearchStrategy[str]:
    """One bad item: a field of a chosen schema set outside its type or bounds, or a
    malformed or unknown override."""
    fields = [(prefix, f) for prefix, schema in schemas for f in _fields(schema)]
    bad_value = st.sampled_from(fields).flatmap(
        lambda pf: _invalid(pf[1][1], pf[1][2]).map(lambda v: f"{pf[0]}{pf[1][0]}={v}")
    )
    return st.one_of(bad_value, st.sampled_from(MALFORMED))


@st.composite
def command_lines(draw) -> list[str]:
    """A command line: group choices, valid field values and, in one case out of three,
    exactly one invalid item (so both outcomes, a finished run and a refusal, are common)."""
    groups = config_groups()
    args: list[str] = []
    chosen: dict[str, str] = {"problem": "synthetic_logreg"}
    for group in ("problem", "compressor", "quantizer", "method", "importance", "operator"):
        if draw(st.booleans()):
            option = draw(st.sampled_from(groups[group]))
            chosen[group] = option
            args.append(f"{group}={option}")
    if "problem" not in chosen or not any(a.startswith("problem=") for a in args):
        args.append("problem=synthetic_logreg")
    if draw(st.integers(0, 9)) == 0:
        args.append(f"experiment={draw(st.sampled_from(groups['experiment']))}")
    schemas = [("", Config)] + [
        (f"{group}.", SCHEMAS[group][option])
        for group, option in chosen.items()
        if option in SCHEMAS.get(group, {})
    ]
    for prefix, schema in schemas:
        args += draw(_valid_overrides(prefix, schema))
    if draw(st.integers(0, 2)) == 0:
        args.append(draw(_one_invalid(schemas)))
    if draw(st.integers(0, 5)) == 0:
        args.append(f"lr={draw(st.sampled_from(['auto', '0.1', '-1', 'nan', 'fast', '1e6']))}")
    if not any(a.startswith("rounds=") for a in args):
        args.append("rounds=2")
    return draw(st.permutations(args))


def _run(args: list[str], tmp_root: Path, monkeypatch, capfd) -> tuple[int, str, Path]:
    run_dir = tmp_root / f"run{next(_counter)}"
    monkeypatch.setattr(sys, "argv", ["compress-bench", *args, *FIXED, f"hydra.run.dir={run_dir}"])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capfd.readouterr().err, run_dir


def check_command(args, tmp_root, monkeypatch, capfd) -> None:
    code, err, run_dir = _run(list(args), tmp_root, monkeypatch, capfd)
    event(
        f"exit {code}"
    )  # --hypothesis-show-statistics: how many commands ran, how many were refused
    assert "Traceback" not in err, (args, err)
    if code == 0:
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] in FINISHED, (args, summary)
    else:
        lines = err.strip().splitlines()
        assert code == 2, (args, err)
        assert len(lines) == 1 and lines[0].startswith("compress-bench: error: "), (args, err)


SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the default suite draws the same commands every time
)


@pytest.fixture
def cli_env(tmp_path, monkeypatch, mushrooms_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPRESS_BENCH_OFFLINE", "1")
    monkeypatch.setenv("COMPRESS_BENCH_DATA", str(mushrooms_dir))
    return tmp_path


@settings(max_examples=20, **SETTINGS)
@given(args=command_lines())
def test_no_command_line_gives_a_traceback(args, cli_env, monkeypatch, capfd):
    check_command(args, cli_env, monkeypatch, capfd)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=SETTINGS["suppress_health_check"])
@given(args=command_lines())
def test_no_command_line_gives_a_traceback_many(args, cli_env, monkeypatch, capfd):
    check_command(args, cli_env, monkeypatch, capfd)
