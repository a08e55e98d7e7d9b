"""The f* cache (problems/reference.py): strict schema, checked against the problem at load,
and never a reason for a run to fail; the solver's own failures are UserErrors."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from compress_bench.errors import UserError
from compress_bench.problems import reference as reference_mod
from compress_bench.problems.base import Reference
from compress_bench.problems.logreg import LogisticRegression, synthetic_logreg_data
from compress_bench.problems.reference import cached_reference, solve_reference
from compress_bench.problems.splits import split_indices
from tests._unprivileged import run_unprivileged, shared_tmp

D = 5


def make_problem(l2: float = 0.1) -> LogisticRegression:
    features, labels = synthetic_logreg_data(60, D, seed=1, label_noise=0.5)
    shards = split_indices(labels, 2, "iid", 0)
    return LogisticRegression(features, labels, shards, l2, np.zeros(D), "t")


@pytest.fixture(scope="module")
def solved() -> tuple[Reference, dict]:
    """The true reference and the cache entry it is stored as."""
    ref = solve_reference(make_problem())
    entry = {
        "version": 1,
        "problem": "t",
        "fstar": ref.fstar,
        "grad_norm": ref.grad_norm,
        "xstar": ref.xstar,
    }
    return ref, entry


def entry_path(folder: Path, problem: LogisticRegression) -> Path:
    return folder / f"reference-{problem.fingerprint()}.json"


def _moved_consistently(entry: dict) -> dict:
    """x* moved off the minimiser, with f* updated to f there: only the gradient tells."""
    x = torch.tensor(entry["xstar"], dtype=torch.float64) + 1e-3
    loss, _ = make_problem().full_loss_and_grad(x)
    return {**entry, "xstar": x.tolist(), "fstar": float(loss)}


BAD_ENTRIES = {
    "array": lambda e: "[1, 2]",
    "fstar-null-only": lambda e: '{"fstar": null}',
    "fstar-string-only": lambda e: '{"fstar": "abc"}',
    "fstar-null": lambda e: {**e, "fstar": None},
    "fstar-string": lambda e: {**e, "fstar": "abc"},
    "fstar-bool": lambda e: {**e, "fstar": True},
    "fstar-nan": lambda e: {**e, "fstar": math.nan},
    "fstar-inf": lambda e: {**e, "fstar": math.inf},
    "fstar-missing": lambda e: {k: v for k, v in e.items() if k != "fstar"},
    "fstar-edited": lambda e: {**e, "fstar": 0.0},
    "fstar-off-by-1e-10": lambda e: {**e, "fstar": e["fstar"] * (1 + 1e-10)},
    "xstar-missing": lambda e: {k: v for k, v in e.items() if k != "xstar"},
    "xstar-short": lambda e: {**e, "xstar": e["xstar"][:-1]},
    "xstar-long": lambda e: {**e, "xstar": [*e["xstar"], 0.0]},
    "xstar-not-a-list": lambda e: {**e, "xstar": {"0": 1.0}},
    "xstar-nan": lambda e: {**e, "xstar": [math.nan, *e["xstar"][1:]]},
    "xstar-string": lambda e: {**e, "xstar": ["1", *e["xstar"][1:]]},
    "xstar-moved": _moved_consistently,
    "grad-norm-missing": lambda e: {k: v for k, v in e.items() if k != "grad_norm"},
    "grad-norm-negative": lambda e: {**e, "grad_norm": -1.0},
    "version-true": lambda e: {**e, "version": True},
    "version-other": lambda e: {**e, "version": 2},
    "not-json": lambda e: '{"version": 1, "fstar": ',
    "not-utf8": lambda e: b"\xff\xfe{}",
    "deeply-nested": lambda e: "[" * 100_000 + "]" * 100_000,
}


def _write(path: Path, content: object) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))  # NaN and Infinity as Python writes them


@pytest.mark.parametrize("make_bad", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_bad_entry_is_recomputed_and_overwritten(tmp_path, caplog, solved, make_bad) -> None:
    ref, entry = solved
    problem = make_problem()
    path = entry_path(tmp_path, problem)
    _write(path, make_bad(entry))
    with caplog.at_level(logging.WARNING, logger=reference_mod.__name__):
        got = cached_reference(problem, tmp_path)
    assert got == ref
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"ignoring reference cache {path}" in warnings[0]
    assert json.loads(path.read_text()) == entry
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no stray .tmp


def test_valid_entry_is_used_without_solving(tmp_path, caplog, solved, monkeypatch) -> None:
    ref, entry = solved
    problem = make_problem()
    # within FSTAR_RTOL: another machine's rounding must not force a recomputation
    nudged = {**entry, "fstar": entry["fstar"] * (1 + 1e-14)}
    entry_path(tmp_path, problem).write_text(json.dumps(nudged))
    monkeypatch.setattr(reference_mod, "solve_reference", _must_not_solve)
    with caplog.at_level(logging.WARNING, logger=reference_mod.__name__):
        got = cached_reference(problem, tmp_path)
    assert got == Reference(nudged["fstar"], ref.xstar, ref.grad_norm)
    assert not caplog.records


def _must_not_solve(problem):
    raise AssertionError("solved although the cache held a valid entry")


def test_entry_of_a_folder_is_skipped(tmp_path, caplog, solved) -> None:
    ref, _ = solved
    problem = make_problem()
    entry_path(tmp_path, problem).mkdir()
    with caplog.at_level(logging.WARNING, logger=reference_mod.__name__):
        assert cached_reference(problem, tmp_path) == ref
    assert "cannot be read" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == [entry_path(tmp_path, problem).name]


def test_cache_dir_that_is_a_file(tmp_path, solved) -> None:
    ref, _ = solved
    blocker = tmp_path / "cache"
    blocker.write_text("a file")
    assert cached_reference(make_problem(), blocker / "reference") == ref
    assert cached_reference(make_problem(), blocker) == ref
    assert blocker.read_text() == "a file"


def _stub_solve(problem) -> Reference:
    return Reference(0.5, [0.0] * D, 0.0)


def test_unsearchable_cache_dir_as_an_unprivileged_user(monkeypatch) -> None:
    """mode 000 on the cache folder, for a user whom it applies to (tests/_unprivileged.py).
    The solve is stubbed: the child process must not start torch's thread pool."""
    monkeypatch.setattr(reference_mod, "solve_reference", _stub_solve)
    problem = make_problem()
    with shared_tmp() as root:
        folder = root / "reference"
        folder.mkdir()
        entry_path(folder, problem).write_text("{}")
        folder.chmod(0)
        [(kind, message)] = run_unprivileged(lambda: cached_reference(problem, folder))
    assert (kind, message) == ("ok", repr(_stub_solve(problem)))


def test_unreadable_entry_simulated(tmp_path, caplog, monkeypatch) -> None:
    """The same on any machine: reading the entry fails with EACCES, as under mode 000."""
    monkeypatch.setattr(reference_mod, "solve_reference", _stub_solve)
    problem = make_problem()
    path = entry_path(tmp_path, problem)
    path.write_text("{}")
    real_stat, real_read = Path.stat, Path.read_text

    def denied(real):
        def method(self, *args, **kwargs):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *args, **kwargs)

        return method

    monkeypatch.setattr(Path, "stat", denied(real_stat))
    monkeypatch.setattr(Path, "read_text", denied(real_read))
    with caplog.at_level(logging.WARNING, logger=reference_mod.__name__):
        assert cached_reference(problem, tmp_path) == _stub_solve(problem)
    assert "cannot be read (Permission denied)" in caplog.text


def test_unconverged_solution_is_not_cached(tmp_path, monkeypatch) -> None:
    unconverged = Reference(0.5, [0.0] * D, 1e-6)
    monkeypatch.setattr(reference_mod, "solve_reference", lambda problem: unconverged)
    assert cached_reference(make_problem(), tmp_path) == unconverged
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("l2", [math.nan, math.inf])
def test_non_finite_objective_is_a_user_error(tmp_path, capfd, l2: float) -> None:
    problem = make_problem(l2)
    with pytest.raises(UserError, match=f"not finite at x = 0 .*problem.l2 = {l2}") as info:
        cached_reference(problem, tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert "MKL" not in capfd.readouterr().err  # LAPACK was never handed NaNs
