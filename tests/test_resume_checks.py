"""A resume can never damage a run: everything is checked before anything is written, so a
refused resume is one line, exit 2, and the run folder byte for byte as it was; an accepted
one logs into the run's own compress-bench.log and leaves no empty Hydra folder behind."""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from pathlib import Path

import pytest
import torch

from compress_bench.cli import main
from compress_bench.run.state import CHECKPOINT

SYNTH = ("problem=synthetic_logreg", "progress=false", "threads=1")
RUN = ("rounds=30", "log_every=3", "checkpoint_every=10")  # checkpoint at round 30, 10 rows


def cli(monkeypatch, capfd, *args: str) -> tuple[int, str]:
    """``compress-bench *args`` in this process: (exit code, stderr)."""
    monkeypatch.setenv("COMPRESS_BENCH_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["compress-bench", *SYNTH, *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capfd.readouterr().err


def snapshot(root: Path) -> dict[str, str]:
    """Every file (its sha256) and folder under root."""
    return {
        str(p.relative_to(root)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        )
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def run(tmp_path, monkeypatch, capfd) -> Path:
    """A finished run (rows 0, 3, ..., 30) with its checkpoint at the start of round 30."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "run"
    code, err = cli(monkeypatch, capfd, *RUN, f"hydra.run.dir={folder}")
    assert code == 0, err
    return folder


def _drop_rows(folder: Path, count: int) -> None:
    lines = (folder / "metrics.csv").read_bytes().splitlines(keepends=True)
    (folder / "metrics.csv").write_bytes(b"".join(lines[:-count]))


def _renumber_row(folder: Path, index: int, new_round: int) -> None:
    lines = (folder / "metrics.csv").read_bytes().splitlines(keepends=True)
    first, rest = lines[index + 1].split(b",", 1)
    lines[index + 1] = str(new_round).encode() + b"," + rest
    (folder / "metrics.csv").write_bytes(b"".join(lines))


def _edit_checkpoint(folder: Path, edit) -> None:
    path = folder / CHECKPOINT
    payload = torch.load(path, weights_only=True)
    edit(payload["state"])
    torch.save(payload, path)


class NotAllowed:  # a pickled global that weights_only loading refuses
    pass


REFUSED = {
    # rounds below the checkpoint: before, summary.json became `completed` with rounds_done 0
    # and the rows after round 5 were cut
    "rounds-below-checkpoint": (None, ["rounds=5"], "is at round 30, past rounds=5"),
    # metrics.csv with fewer rows than the checkpoint counts: before, summary.json was
    # rewritten `running`, then a ValueError (exit 1)
    "fewer-rows": (
        lambda f: _drop_rows(f, 2),
        ["rounds=60"],
        "has 9 whole rows, the checkpoint 10",
    ),
    # the last kept row of another round: before, accepted and resumed over it
    "other-last-round": (
        lambda f: _renumber_row(f, 9, 26),
        ["rounds=60"],
        "the last row it keeps (row 10) is round 26, the checkpoint recorded round 27",
    ),
    # an x of another shape: before, the run failed in its first round (exit 1)
    "x-shape": (
        lambda f: _edit_checkpoint(f, lambda s: s.update(x=torch.zeros(21, dtype=torch.float64))),
        ["rounds=60"],
        "holds an x of shape (21,)",
    ),
    # a config change (refused before as well: kept as a guard)
    "config-change": (None, ["rounds=60", "ratio=0.3"], "was written by another config"),
    # a truncated checkpoint: before, torch's message was relayed
    "truncated-checkpoint": (
        lambda f: (f / CHECKPOINT).write_bytes((f / CHECKPOINT).read_bytes()[:300]),
        ["rounds=60"],
        "is corrupt or unreadable",
    ),
    # a checkpoint holding a global weights_only refuses: before, torch's advice to load with
    # weights_only=False (running the file's pickled code) was relayed
    "unsafe-pickle": (
        lambda f: _edit_checkpoint(f, lambda s: s.update(method={"x": NotAllowed()})),
        ["rounds=60"],
        "is corrupt or unreadable",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_resume_is_one_line_and_leaves_the_folder_as_it_was(
    case, run, tmp_path, monkeypatch, capfd
):
    damage, args, message = REFUSED[case]
    if damage is not None:
        damage(run)
    before = snapshot(run)
    resume_dir = tmp_path / "resume"
    code, err = cli(
        monkeypatch,
        capfd,
        *RUN[1:],
        *args,
        f"resume={run}",
        f"hydra.run.dir={resume_dir}",
    )
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "weights_only" not in err and "Traceback" not in err
    assert snapshot(run) == before


def test_a_resume_into_a_folder_it_cannot_write_is_refused(run, tmp_path, monkeypatch, capfd):
    """os.access says the run folder is not writable (as root a chmod would not show it)."""
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == run or Path(path).parent == run:
            return not (mode & os.W_OK)
        return real_access(path, mode, *args, **kwargs)

    before = snapshot(run)
    monkeypatch.setattr(os, "access", access)
    code, err = cli(
        monkeypatch,
        capfd,
        *RUN[1:],
        "rounds=60",
        f"resume={run}",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "permission denied" in lines[0]
    assert snapshot(run) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_resume_into_a_read_only_folder_is_refused(run, tmp_path, monkeypatch, capfd):
    before = snapshot(run)
    run.chmod(0o555)
    try:
        code, err = cli(
            monkeypatch,
            capfd,
            *RUN[1:],
            "rounds=60",
            f"resume={run}",
            f"hydra.run.dir={tmp_path / 'r'}",
        )
    finally:
        run.chmod(0o755)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert snapshot(run) == before


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return [row[:-1] for row in csv.reader(fh)]  # wall_time (the last column) aside


def test_a_resumed_run_logs_in_its_own_folder_and_keeps_rows_byte_for_byte(
    run, tmp_path, monkeypatch, capfd
):
    """The resume command's log lines go to the run's compress-bench.log (appended), its
    Hydra record to the run's .hydra/resume-<name>/, and the folder Hydra made for it is
    removed; the kept rows are the same bytes (\\r\\n line ends: the old rewrite turned them
    into \\n), and the rows match an uninterrupted run."""
    straight = tmp_path / "straight"
    code, err = cli(monkeypatch, capfd, *RUN[1:], "rounds=60", f"hydra.run.dir={straight}")
    assert code == 0, err
    log_before = (run / "compress-bench.log").read_text()
    resume_dir = tmp_path / "resume"
    code, err = cli(
        monkeypatch, capfd, *RUN[1:], "rounds=60", f"resume={run}", f"hydra.run.dir={resume_dir}"
    )
    assert code == 0, err
    assert f"resuming {run} at round 30" in err
    assert not resume_dir.exists()
    record = run / ".hydra" / "resume-resume" / "overrides.yaml"
    assert f"resume={run}" in record.read_text()
    log = (run / "compress-bench.log").read_text()
    assert log.startswith(log_before)
    assert f"resuming {run} at round 30" in log and "completed after 60 rounds" in log
    data = (run / "metrics.csv").read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") == 22  # header and rows 0, 3, ..., 60
    assert _rows(run / "metrics.csv") == _rows(straight / "metrics.csv")
