"""A refused command leaves no folder behind; a sweep cannot resume; paths with spaces and
accented letters work when quoted, and an unquoted one says how to quote it."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import dataset_path, files_under, run_main

SYNTH = ("problem=synthetic_logreg", "progress=false", "rounds=2")


REFUSED = {
    "bad value": ["ratio=5"],
    "unknown key": ["rato=0.1"],
    "appended key": ["+rato=0.1"],
    "bad option": ["compressor=nope"],
    "ignored setting": ["optimizer.momentum=0.9"],
    # found by the job, after Hydra made the run folder
    "too many workers": ["n_workers=601"],
    "missing dataset": ["problem=mushrooms", "data_dir=${hydra:runtime.cwd}/no_data"],
    # before: also a warning line (md_greedy's lr=auto) before the error
    "no checkpoint": ["compressor=md_greedy", "resume=${hydra:runtime.cwd}"],
}


@pytest.mark.parametrize("where", ["default outputs", "hydra.run.dir"])
@pytest.mark.parametrize("case", REFUSED)
def test_refused_input_leaves_no_folder(case, where, tmp_path, monkeypatch, capfd):
    """Before: Hydra made outputs/<date>/<time>-.../ (or the given run folder) with .hydra/ and
    the log before the job refused the config, and left it there."""
    args = [*SYNTH, *REFUSED[case]]
    if where == "hydra.run.dir":
        args.append(f"hydra.run.dir={tmp_path / 'runs' / 'a' / 'b'}")
    code, _, err = run_main(args, tmp_path, monkeypatch, capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert files_under(tmp_path) == []


def test_a_refused_run_keeps_the_folder_it_was_given(tmp_path, monkeypatch, capfd):
    """An existing (empty) run folder is the user's: Hydra's record goes, the folder stays."""
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    args = [*SYNTH, "n_workers=601", f"hydra.run.dir={run_dir}"]
    code, _, err = run_main(args, tmp_path, monkeypatch, capfd)
    assert code == 2 and "n_workers=601 is more than the 600 samples" in err, err
    assert files_under(tmp_path) == ["mine"]


def test_a_sweep_with_resume_is_refused_before_any_job(tmp_path, monkeypatch, capfd):
    """Before: every job ran (each continuing, or failing to continue, the same run) and the
    report called them missing."""
    sweep = tmp_path / "sweep"
    args = ["-m", *SYNTH, "seed=0,1", f"resume={tmp_path / 'old'}", f"hydra.sweep.dir={sweep}"]
    code, _, err = run_main(args, tmp_path, monkeypatch, capfd)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "cannot be part of a sweep (-m)" in lines[0]
    assert files_under(tmp_path) == []


def test_an_unquoted_accented_path_says_how_to_quote_it(tmp_path, monkeypatch, capfd):
    """Before: Hydra's "LexerNoViableAltException: hydra.run.dir=/tmp/.../é ^"."""
    path = tmp_path / "é"
    code, _, err = run_main([*SYNTH, f"hydra.run.dir={path}"], tmp_path, monkeypatch, capfd)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert f"""'hydra.run.dir="{path}"'""" in lines[0]
    assert files_under(tmp_path) == []


def test_paths_with_spaces_and_accents_work_quoted(tmp_path, monkeypatch, capfd):
    """hydra.run.dir, data_dir and resume, each a quoted path with a space and an accented
    letter, as the README shows ('key="/path/with space/é"' on a shell)."""
    source = dataset_path("mushrooms", "mushrooms")
    data = tmp_path / "data dir" / "ü"
    (data / "mushrooms").mkdir(parents=True)
    shutil.copy(source, data / "mushrooms" / "mushrooms")
    run_dir = tmp_path / "my runs" / "é 1"
    base = ["progress=false", "checkpoint_every=1", f'data_dir="{data}"']
    code, _, err = run_main(
        [*base, "rounds=2", f'hydra.run.dir="{run_dir}"'], tmp_path, monkeypatch, capfd
    )
    assert code == 0, err
    code, _, err = run_main(
        [*base, "rounds=3", f'resume="{run_dir}"', f'hydra.run.dir="{tmp_path / "é 2"}"'],
        tmp_path,
        monkeypatch,
        capfd,
    )
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_done"] == 3
