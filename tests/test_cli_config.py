"""Typo-proof configuration ("Trust what it reports"): a key outside the schema, with or
without Hydra's ``+``, is refused in one line with the closest key; ``--cfg`` validates as a
run does; a setting the chosen options ignore is refused (or, for data_dir, warned about)."""

from __future__ import annotations

import itertools

import pytest
from omegaconf import OmegaConf

from compress_bench.cli_checks import check_arguments
from compress_bench.config import compose_config, config_groups, validate
from compress_bench.errors import ConfigError
from tests.conftest import run_main

SYNTH = ("problem=synthetic_logreg", "progress=false", "rounds=2")


def assert_refused(code: int, err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("compress-bench: error: ") and message in lines[0], err
    assert "Traceback" not in err


TYPOS = [
    (["rato=0.1"], "unknown key 'rato' (did you mean ratio?)"),
    (["+rato=0.1"], "unknown key 'rato' (did you mean ratio?)"),
    (["++rato=0.1"], "unknown key 'rato' (did you mean ratio?)"),
    (["compressor.scal=dk"], "unknown key 'compressor.scal' for compressor=top_k (did you mean"),
    (["+compressor.scal=dk"], "unknown key 'compressor.scal' for compressor=top_k (did you mean"),
    (["optimizer.momentun=0.9"], "(did you mean optimizer.momentum?)"),
    (["+optimizer.momentun=0.9"], "(did you mean optimizer.momentum?)"),
    (["compressor.sampling=bernoulli"], "(sampling belongs to compressor=biased_rand_k)"),
    (["experimnt=mnist_ef"], "unknown key 'experimnt' (did you mean experiment?)"),
    (["hydra.run.dri=x"], "unknown key 'hydra.run.dri' (did you mean hydra.run.dir?)"),
    (["compressor=md_greedy", "compressor.importance.steps=3"], "write importance.steps="),
]


@pytest.mark.parametrize(("args", "message"), TYPOS)
def test_a_key_outside_the_schema_is_one_line_with_the_closest_key(
    args, message, tmp_path, monkeypatch, capfd
):
    """Before: ``rato=0.1`` said "To append to your config use +rato=0.1", and ``+rato=0.1``
    (or ``+compressor.scal=dk``) ran with the default ratio, the typo stored in its config."""
    run_dir = tmp_path / "run"
    code, _, err = run_main(
        [*SYNTH, *args, f"hydra.run.dir={run_dir}"], tmp_path, monkeypatch, capfd
    )
    assert_refused(code, err, message)
    assert "+" not in err  # never Hydra's "use +key=value"
    assert not run_dir.exists()


def test_plus_on_a_key_the_config_has(tmp_path, monkeypatch, capfd):
    """Before: Hydra's three lines, ending with a suggestion of ``++ratio=0.3``."""
    code, _, err = run_main([*SYNTH, "+ratio=0.3"], tmp_path, monkeypatch, capfd)
    assert_refused(code, err, "ratio is already in the config: write 'ratio=0.3', without the +")


def test_a_sweep_with_a_typo_runs_no_job(tmp_path, monkeypatch, capfd):
    """Before: ``-m seed=0,1 +rato=0.1`` ran both jobs with the default ratio."""
    sweep = tmp_path / "sweep"
    args = ["-m", *SYNTH, "seed=0,1", "+rato=0.1", f"hydra.sweep.dir={sweep}"]
    code, _, err = run_main(args, tmp_path, monkeypatch, capfd)
    assert_refused(code, err, "unknown key 'rato' (did you mean ratio?)")
    assert not sweep.exists()


def test_the_library_refuses_an_appended_key_too():
    """compose_config + build_run (notebooks, benchmarks) go through validate as well."""
    with pytest.raises(ConfigError, match=r"unknown key 'compressor.scal' for compressor=top_k"):
        validate(compose_config("+compressor.scal=dk"))


@pytest.mark.parametrize("flag", [["--cfg", "job"], ["--cfg", "all"], ["-c", "job"]])
@pytest.mark.parametrize("bad", ["ratio=5", "+rato=0.1", "optimizer.momentum=0.9"])
def test_cfg_validates_like_a_run(flag, bad, tmp_path, monkeypatch, capfd):
    """Before: ``--cfg job ratio=5`` printed the config and exited 0."""
    code, _, run_err = run_main([*SYNTH, bad], tmp_path, monkeypatch, capfd)
    assert code == 2
    code, out, err = run_main([*flag, *SYNTH, bad], tmp_path, monkeypatch, capfd)
    assert_refused(code, err, run_err.strip().removeprefix("compress-bench: error: "))
    assert out == ""
    code, out, err = run_main([*flag, *SYNTH], tmp_path, monkeypatch, capfd)
    assert code == 0 and "ratio: 0.2" in out, err


UNUSED = [
    (["optimizer.momentum=0.9"], "optimizer.momentum=0.9 has no effect with optimizer=gd"),
    (["eval_every=5"], "eval_every has no effect on problem=synthetic_logreg"),
    (["problem=mushrooms", "eval_every=5"], "eval_every has no effect on problem=mushrooms"),
    (["importance.steps=3"], "importance.steps has no effect with compressor=top_k"),
    (["importance=thesis_code"], "importance has no effect with compressor=rand_k"),
    (["compressor=md_greedy", "importance.scope=joint"], "with granularity=global"),
    (["operator=natural", "ratio=0.1"], "ratio has no effect with compressor=identity"),
    (["compressor=adaptive_rand_k", "ratio=0.5"], "with compressor=adaptive_rand_k"),
    (["tol_metric=loss"], "tol_metric has no effect without tol"),
    (["optimizer=sgd", "optimizer.gamma=0.5"], "optimizer.gamma has no effect with optimizer."),
    (["optimizer=sgd", "optimizer.step_every=5"], "schedule=constant; it is read by"),
    (["problem.layout=[10,10]"], "problem.layout has no effect with granularity=global"),
    (["problem.split=contiguous", "problem.split_seed=3"], "with problem.split=contiguous"),
]


@pytest.mark.parametrize(("args", "message"), UNUSED)
def test_a_setting_the_chosen_options_ignore_is_refused(
    args, message, tmp_path, monkeypatch, capfd
):
    """Before: each of these ran, the setting silently ignored."""
    if "importance=thesis_code" in args:
        args = ["compressor=rand_k", *args]
    run_dir = tmp_path / "run"
    code, _, err = run_main(
        [*SYNTH, *args, f"hydra.run.dir={run_dir}"], tmp_path, monkeypatch, capfd
    )
    assert_refused(code, err, message)
    assert not run_dir.exists()


USED = [
    ["optimizer=sgd", "optimizer.momentum=0.5"],
    ["problem=mnist", "eval_every=5", "lr=0.1"],
    ["compressor=md_greedy", "importance.steps=3", "importance=thesis_code"],
    [
        "compressor=md_greedy",
        "granularity=layer",
        "problem.layout=[10,10]",
        "importance.scope=joint",
    ],
    ["operator=rand_k", "ratio=0.1"],
    ["tol=1e-3", "tol_metric=loss"],
    ["optimizer=sgd", "optimizer.schedule=step", "optimizer.gamma=0.5", "optimizer.step_every=5"],
    ["problem.split=label_sorted", "problem.split_seed=3", "n_workers=2"],
    ["optimizer.momentum=0"],
]


@pytest.mark.parametrize("args", USED, ids=lambda args: " ".join(args))
def test_the_same_settings_pass_where_they_are_read(args, tmp_path, monkeypatch, capfd):
    code, out, err = run_main(["--cfg", "job", *SYNTH, *args], tmp_path, monkeypatch, capfd)
    assert code == 0 and err == "", err


WARNING = "data_dir is not read: problem=synthetic_logreg is generated, not loaded"


def test_data_dir_on_a_generated_problem_is_a_warning(tmp_path, monkeypatch, capfd):
    """Where data would be looked for cannot change a result: one warning, in the run's log
    too, and the run goes on (--cfg job: on stderr). Before: no word about it."""
    run_dir = tmp_path / "run"
    args = [*SYNTH, f"data_dir={tmp_path}"]
    code, _, err = run_main([*args, f"hydra.run.dir={run_dir}"], tmp_path, monkeypatch, capfd)
    assert code == 0 and f"[compress-bench] {WARNING}" in err.splitlines(), err
    assert WARNING in (run_dir / "compress-bench.log").read_text()
    code, out, err = run_main(["--cfg", "job", *args], tmp_path, monkeypatch, capfd)
    assert code == 0 and err.splitlines() == [f"compress-bench: warning: {WARNING}"], err


def test_a_warning_never_comes_before_an_error_line(tmp_path, monkeypatch, capfd):
    """A run refused after the checks (here by the problem, once built) says its one line."""
    args = [*SYNTH, f"data_dir={tmp_path}", "problem.batch_size=50062"]
    code, _, err = run_main(args, tmp_path, monkeypatch, capfd)
    assert_refused(code, err, "problem.batch_size=50062 must be between 1 and the smallest")


def _experiment_jobs(experiment: str, expand: bool) -> list[list[str]]:
    """experiment=<name>, and with expand each job of its sweep (hydra.sweeper.params)."""
    cfg = compose_config(f"experiment={experiment}", hydra_node=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params) or {}
    if not expand:
        return [[f"experiment={experiment}"]]
    choices = [
        [f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()
    ]
    return [[f"experiment={experiment}", *job] for job in itertools.product(*choices)]


@pytest.mark.parametrize("experiment", config_groups()["experiment"])
def test_every_shipped_experiment_passes_the_checks(experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for job in _experiment_jobs(experiment, expand=False):
        check_arguments(job)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", config_groups()["experiment"])
def test_every_job_of_every_shipped_experiment_passes_the_checks(experiment, tmp_path, monkeypatch):
    """Each job as a single run, its sweep choices on the command line (as a user reruns one)."""
    monkeypatch.chdir(tmp_path)
    for job in _experiment_jobs(experiment, expand=True):
        check_arguments(job)


def test_a_quantizer_on_low_rank_factors_is_one_line(tmp_path, monkeypatch, capfd):
    """PowerSGD per tensor sends factors, which a quantizer cannot round (spec 18): refused
    once the layout is known. Before: an internal error with a traceback file."""
    args = ["experiment=mnist_ef_smoke", "compressor=power_sgd", "quantizer=natural"]
    code, _, err = run_main(args, tmp_path, monkeypatch, capfd)
    assert_refused(code, err, "power_sgd sends low-rank factors")
