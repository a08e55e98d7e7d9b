"""The README's result tables are generated from the sweeps (``make figures``), not typed:
``compress_bench.report.table`` rewrites exactly the block between a table's markers, and
running it again changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compress_bench.report.jobs import ReportError
from compress_bench.report.table import (
    README_TABLES,
    bits_text,
    error_feedback_table,
    main,
    ratio_text,
    replace_block,
    update_readme,
)
from tests.test_sweep_report import write_job

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^<!-- table:(?P<name>\w+) -->$", re.MULTILINE)

PAGE = """# Title

Some prose with <!-- table:thesis_logreg --> inline (not a marker line).

<!-- table:thesis_logreg -->
| old | table |
|---|---|
| 1 | 2 |
<!-- /table -->

Between the blocks.

<!-- table:other -->
| keep | me |
<!-- /table -->
The end.
"""


def test_replace_block_replaces_exactly_the_lines_between_the_markers() -> None:
    new = replace_block(PAGE, "thesis_logreg", "| new |\n|---|\n\n\n")
    expected = PAGE.replace("| old | table |\n|---|---|\n| 1 | 2 |\n", "| new |\n|---|\n")
    assert new == expected
    assert replace_block(new, "thesis_logreg", "| new |\n|---|") == new  # idempotent
    assert replace_block(PAGE, "other", "| keep | me |") == PAGE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no markers at all\n", "no '<!-- table:t -->' marker"),
        ("<!-- table:t -->\n<!-- /table -->\n<!-- table:t -->\n<!-- /table -->\n", "has 2"),
        ("<!-- table:t -->\n| a |\n", "no '<!-- /table -->' line after it"),
        ("<!-- /table -->\n<!-- table:t -->\n", "no '<!-- /table -->' line after it"),
    ],
)
def test_replace_block_refuses_a_malformed_block(text: str, message: str) -> None:
    with pytest.raises(ReportError, match=re.escape(message)):
        replace_block(text, "t", "| x |")


def test_numbers_are_written_as_the_readme_writes_them() -> None:
    assert ratio_text(0.0213) == "2.1e-2" and ratio_text(3.8e-3) == "3.8e-3"
    assert bits_text(4_431_000.0) == "4.43e6" and bits_text(759_000.0) == "7.59e5"
    assert ratio_text(float("nan")) == bits_text(float("nan")) == "n/a"


def _write(
    sweep: Path,
    num: int,
    overrides: list[str],
    rel: list[float],
    *,
    compressor: str,
    quantizer: str = "none",
    method: str = "dcgd",
    status: str = "completed",
    tol: float = 1e-8,
    bits_per_round: float = 100.0,
) -> None:
    """A job whose metrics rows are every 10 rounds, with ``rel`` as grad_norm_rel."""
    rounds = np.arange(len(rel)) * 10
    metrics = pd.DataFrame(
        {
            "round": rounds,
            "loss": 1.0,
            "loss_gap": rel,
            "grad_norm": rel,
            "grad_norm_rel": rel,
            "bits": rounds * bits_per_round,
            "bits_total": rounds * bits_per_round,
            "bits_thesis": rounds * bits_per_round / 4,
            "grad_evals": rounds * (101 if compressor.startswith("md_") else 1),
            "wall_time": rounds * 1e-3,
        }
    )
    reached = rel[-1] <= tol
    summary = {
        "status": status,
        "stop_reason": "tol" if reached else "rounds",
        "compressor": compressor,
        "quantizer": quantizer,
        "method": method,
        "rounds_done": int(rounds[-1]),
        "total_bits": float(rounds[-1] * bits_per_round),
        "final": {"grad_norm_rel": rel[-1], "loss": 1.0, "loss_gap": rel[-1], "grad_norm": 1.0},
        "config": {"tol": tol, "rounds": 80},
    }
    write_job(sweep, num, overrides, summary, metrics)


def _thesis_sweep(root: Path) -> Path:
    sweep = root / "thesis"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    _write(sweep, 0, ["compressor=top_k"], [1.0, 1e-3, 1e-7], compressor="top_k", tol=1e-6)
    _write(sweep, 1, ["compressor=md_greedy"], [1.0, 1e-2, 1e-4], compressor="md_greedy", tol=1e-6)
    return sweep


def test_the_thesis_table_is_written_into_its_block_and_only_there(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(PAGE)
    assert update_readme(readme, {"thesis_logreg": _thesis_sweep(tmp_path)}) is True
    table = (
        "| operator | rounds to 1e-6 | thesis bits | spec bits | gradient evaluations |\n"
        "|---|---|---|---|---|\n"
        "| TopK | 20 | 500 | 2,000 | 20 |\n"
        "| MD Greedy | not reached | not reached | not reached | not reached |\n"
    )
    assert readme.read_text() == PAGE.replace("| old | table |\n|---|---|\n| 1 | 2 |\n", table)
    before = readme.stat().st_mtime_ns
    assert update_readme(readme, {"thesis_logreg": tmp_path / "thesis"}) is False  # idempotent
    assert readme.stat().st_mtime_ns == before  # not even rewritten


def test_the_error_feedback_table_has_a_row_per_operator_and_a_column_per_method(
    tmp_path: Path,
) -> None:
    sweep = tmp_path / "ef"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    stall, fast = [1.0, 0.1, 0.05, 0.03, 0.021], [1.0, 1e-3, 1e-6, 1e-9]
    operators = [("top_k", "top_k", "none"), ("scaled_sign", "identity", "scaled_sign")]
    num = 0
    for operator, compressor, quantizer in operators:
        for method in ("dcgd", "ef", "ef21"):
            if (operator, method) == ("scaled_sign", "ef"):
                continue  # a job that never left a folder: "missing"
            rel = fast if (operator, method) == ("top_k", "ef21") else stall
            status = "diverged" if (operator, method) == ("top_k", "ef") else "completed"
            overrides = [f"operator={operator}", f"method={method}"]
            _write(
                sweep, num, overrides, rel, compressor=compressor, quantizer=quantizer,
                method=method, status=status, bits_per_round=200.0,
            )  # fmt: skip
            num += 1
    assert error_feedback_table(sweep) == (
        "| operator | dcgd: ‖∇f‖ ratio after 80 rounds | ef (EF14): ‖∇f‖ ratio after 80 rounds"
        " | ef21: rounds to 1e-8 (bits per worker) |\n"
        "|---|---|---|---|\n"
        "| TopK | 2.1e-2 | diverged | 30 (6.00e3) |\n"
        "| scaled sign | 2.1e-2 | missing | not within 80 (2.1e-2) |\n"
    )


def test_the_command_line_names_its_errors_in_one_line(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(PAGE)
    assert main(["--readme", str(readme), "thesis_logreg"]) == 2
    assert main(["--readme", str(readme), f"nonsense={tmp_path}"]) == 2
    assert main(["--readme", str(readme), f"error_feedback={tmp_path}"]) == 2  # no such block
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("python -m compress_bench") for line in lines)
    assert "NAME=SWEEP_DIR" in lines[0] and "unknown README table 'nonsense'" in lines[1]
    assert readme.read_text() == PAGE  # nothing written on a failure
    assert main(["--readme", str(readme), f"thesis_logreg={_thesis_sweep(tmp_path)}"]) == 0
    assert "| TopK | 20 |" in readme.read_text()


def test_make_figures_regenerates_every_table_of_the_readme() -> None:
    """Each marked block of README.md has a builder, and the figures target passes it its
    sweep; the README says where its numbers come from."""
    readme = (REPO / "README.md").read_text()
    names = BLOCK.findall(readme)
    assert names and len(names) == len(set(names)) and set(names) <= set(README_TABLES)
    assert readme.splitlines().count("<!-- /table -->") == len(names)
    makefile = (REPO / "Makefile").read_text()
    target = makefile[makefile.index("\nfigures:") :]
    command = re.search(r"-m compress_bench\.report\.table --readme README\.md (.*)", target)
    assert command is not None
    given = dict(item.split("=", 1) for item in command[1].split())
    assert set(given) == set(names)
    for name, sweep in given.items():
        assert f"hydra.sweep.dir={sweep} " in target, f"{name}: its sweep is not run by the target"
