"""Simulated communication time (spec 28, the alpha-beta model): the formulas and the spec's
worked examples, the network presets, the comm_time and sim_time columns (absent without a
network), their resume, bad input in one line, and the report's time panels."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from compress_bench.comm.network import TOPOLOGIES, NetworkModel, sim_time
from compress_bench.config import compose_config, config_groups, network_node
from compress_bench.report.comparison import figure_comparison
from compress_bench.report.panels import SIM_TIME, SIM_TIME_LABEL, x_columns
from compress_bench.report.plots import figure_convex, figure_neural
from compress_bench.run.ledger import TIME_COLUMNS, BitLedger
from compress_bench.runner import build_run, execute
from tests.conftest import DATASETS, run_main

SYNTH = ("problem=synthetic_logreg", "progress=false", "threads=1")

# --- the model ------------------------------------------------------------------------------


def test_spec_example_parameter_server():
    """ps, alpha = 1 ms, B = 1e8, b = (1e6, 5e5): T = 0.001 + 0.01 = 0.011 s."""
    model = NetworkModel(1e-3, 1e8, "ps")
    assert model.round_time([1_000_000, 500_000]) == pytest.approx(0.011, rel=1e-15)


def test_spec_example_ring_all_reduce_of_dense_resnet18():
    """ring, p = 4, alpha = 0, B = 1e9, S = 32 * 11,173,962 = 357,566,784 bits:
    T = 2 (3/4) 0.357566784 = 0.536350176 s."""
    s = 32 * 11_173_962
    assert s == 357_566_784
    model = NetworkModel(0.0, 1e9, "ring")
    assert model.round_time([s] * 4) == pytest.approx(0.536350176, rel=1e-15)


def test_spec_example_all_gather():
    """allgather, p = 4, alpha = 10 us, B = 1e9, b = (1000, 2000, 3000, 4000):
    T = 3e-5 + (3/4) 1e-5 = 3.75e-5 s."""
    model = NetworkModel(1e-5, 1e9, "allgather")
    assert model.round_time([1000, 2000, 3000, 4000]) == pytest.approx(3.75e-5, rel=1e-15)


BITS = [1000, 2000, 3000, 4000]
ALPHA, BANDWIDTH, P = 1e-4, 1e6, len(BITS)
FORMULAS = {  # spec 28, written out with the numbers of BITS
    "ps": ALPHA + 4000 / BANDWIDTH,
    "ps_shared": ALPHA + 10000 / BANDWIDTH,
    "ring": 2 * (P - 1) * ALPHA + 2 * (P - 1) / P * 4000 / BANDWIDTH,
    "allgather": (P - 1) * ALPHA + (P - 1) / P * 10000 / BANDWIDTH,
}


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_each_topology_follows_its_formula(topology):
    model = NetworkModel(ALPHA, BANDWIDTH, topology)
    assert model.round_time(BITS) == pytest.approx(FORMULAS[topology], rel=1e-14)
    # the order of the workers does not matter
    assert model.round_time(BITS[::-1]) == pytest.approx(FORMULAS[topology], rel=1e-14)


def test_unequal_messages_count_as_the_largest_in_a_ring_and_as_their_sum_in_a_gather():
    ring, gather = NetworkModel(0.0, 1.0, "ring"), NetworkModel(0.0, 1.0, "allgather")
    assert ring.round_time([10, 30]) == ring.round_time([30, 30]) == pytest.approx(30.0)
    assert gather.round_time([10, 30]) == pytest.approx(20.0)  # (1/2)(10 + 30)


def test_one_worker_pays_only_the_parameter_server():
    assert NetworkModel(1.0, 1.0, "ps").round_time([5]) == 6.0
    assert NetworkModel(1.0, 1.0, "ring").round_time([5]) == 0.0
    assert NetworkModel(1.0, 1.0, "allgather").round_time([5]) == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1e-3, 1e9, "star"), "unknown topology 'star'"),
        ((-1.0, 1e9, "ps"), "latency must be"),
        ((0.0, 0.0, "ps"), "bandwidth must be"),
        ((0.0, float("inf"), "ps"), "bandwidth must be"),
    ],
)
def test_the_model_refuses_bad_values(args, message):
    with pytest.raises(ValueError, match=message):
        NetworkModel(*args)


def test_sim_time_is_compute_plus_comm():
    assert sim_time(0.5, 2.0, 10, None) == 2.5  # measured
    assert sim_time(0.5, 2.0, 10, 0.1) == pytest.approx(1.5)  # 10 rounds of 0.1 s


@pytest.mark.parametrize(
    ("preset", "latency", "bandwidth"),
    [("ethernet_1g", 50e-6, 1e9), ("ethernet_10g", 20e-6, 1e10), ("infiniband_100g", 2e-6, 1e11)],
)
def test_presets_are_the_spec_values(preset, latency, bandwidth):
    assert preset in config_groups()["network"]
    model = NetworkModel.from_config(compose_config(f"network={preset}").network)
    assert model == NetworkModel(latency, bandwidth, "ps")


def test_no_network_by_default():
    assert compose_config().network.name == "none"
    assert network_node(compose_config()) is None
    assert NetworkModel.from_config(None) is None


def _proposal(bits: list[int]):
    """A stand-in for a round's proposal whose message sends ``bits`` (per worker, varying)."""
    message = SimpleNamespace(fixed_bits=None, value_count=torch.zeros(len(bits)))
    return SimpleNamespace(message=message, bits=torch.tensor(bits), total_bits=lambda: sum(bits))


def test_ranks_summing_their_costs_time_the_whole_round():
    """A distributed rank holds its own worker's row: its cost puts that worker's bits in its
    slot, so the element-wise sum of the ranks' costs (comm.sum_ints) is the simulator's."""
    model = NetworkModel(1e-3, 1e6, "ps")
    whole = BitLedger(3, thesis=False, network=model)
    ranks = [BitLedger(3, thesis=False, network=model, first_worker=r) for r in range(3)]
    bits = [148, 111, 37]
    costs = [ledger.cost(_proposal([b])) for ledger, b in zip(ranks, bits, strict=True)]
    summed = tuple(map(sum, zip(*costs, strict=True)))
    assert summed == whole.cost(_proposal(bits)) == (296, 0, 148, 111, 37)
    whole.add(summed)
    assert whole.total == 296 and whole.comm_time == pytest.approx(1e-3 + 148 / 1e6)
    assert BitLedger(3, thesis=False).cost(_proposal(bits)) == (296, 0)  # as without a network


# --- runs -----------------------------------------------------------------------------------


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _run(tmp_path: Path, *overrides: str) -> tuple[dict, list[dict[str, str]]]:
    cfg = compose_config(*SYNTH, *overrides)
    summary = execute(build_run(cfg), tmp_path)
    return summary, _rows(tmp_path / "metrics.csv")


def test_cli_run_writes_comm_time_consistent_with_bits(tmp_path, monkeypatch, capfd):
    """Every worker of rand_k sends the same bits each round: comm_time is
    rounds x (alpha + bits per round / B), and sim_time = wall_time + comm_time."""
    run_dir = tmp_path / "run"
    args = [*SYNTH, "rounds=20", "n_workers=2", "network=ethernet_1g", "compressor=rand_k"]
    code, _, err = run_main([*args, f"hydra.run.dir={run_dir}"], tmp_path, monkeypatch, capfd)
    assert code == 0, err
    rows = _rows(run_dir / "metrics.csv")
    assert list(rows[0])[-2:] == list(TIME_COLUMNS)
    per_round = float(rows[1]["bits"]) / int(rows[1]["round"])
    for row in rows:
        k = int(row["round"])
        assert float(row["bits"]) == pytest.approx(k * per_round)
        assert float(row["comm_time"]) == pytest.approx(k * (50e-6 + per_round / 1e9))
        wall, comm = float(row["wall_time"]), float(row["comm_time"])
        assert float(row["sim_time"]) == wall + comm
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_comm_time"] == float(rows[-1]["comm_time"])
    assert summary["config"]["network"]["name"] == "ethernet_1g"
    assert (run_dir / "loss.png").is_file()


@pytest.mark.parametrize("topology", ["ps_shared", "ps"])
def test_variable_messages_are_timed_from_each_workers_bits(topology, tmp_path):
    """Bernoulli sampling sends a message of its own size from each worker. With ps_shared a
    round takes alpha + its bits of all workers / B, so comm_time = rounds x alpha +
    bits_total / B; with ps it takes alpha + the largest message / B, more than the mean."""
    _, rows = _run(
        tmp_path,
        "rounds=6",
        "log_every=1",
        "n_workers=3",
        "compressor=biased_rand_k",
        "compressor.sampling=bernoulli",
        "network=ethernet_1g",
        f"network.topology={topology}",
        "network.latency=1e-3",
        "network.bandwidth=1e6",
    )
    for row in rows[1:]:
        k, total, comm = int(row["round"]), int(row["bits_total"]), float(row["comm_time"])
        if topology == "ps_shared":
            assert comm == pytest.approx(k * 1e-3 + total / 1e6, rel=1e-12)
        else:
            assert comm > k * 1e-3 + total / 3 / 1e6 + 1e-12


def test_no_network_no_time_columns_and_the_same_summary_config(tmp_path):
    summary, rows = _run(tmp_path, "rounds=3")
    assert not set(TIME_COLUMNS) & set(rows[0])
    assert "network" not in summary["config"]
    assert not any(key.startswith("total_comm") for key in summary)


def test_configured_compute_time(tmp_path):
    _, rows = _run(
        tmp_path,
        "rounds=4",
        "log_every=1",
        "network=infiniband_100g",
        "network.topology=ring",
        "n_workers=4",
        "network.compute_time=0.25",
    )
    for row in rows:
        expected = 0.25 * int(row["round"]) + float(row["comm_time"])
        assert float(row["sim_time"]) == pytest.approx(expected, rel=1e-15)
    assert float(rows[-1]["comm_time"]) > 0


def test_a_resumed_run_continues_the_comm_time_exactly(tmp_path, monkeypatch, capfd):
    """A run stopped at round 20 (its checkpoint at round 20) and resumed to 40 writes the
    comm_time and sim_time columns of a run of 40 rounds, bit for bit."""
    args = [
        *SYNTH,
        "n_workers=3",
        "compressor=top_k",
        "quantizer=natural_dithering",
        "network=ethernet_10g",
        "network.topology=allgather",
        "network.compute_time=0.01",
        "log_every=5",
    ]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    for folder, rounds in ((straight, 40), (cut, 20)):
        command = [*args, f"rounds={rounds}", "checkpoint_every=10", f"hydra.run.dir={folder}"]
        code, _, err = run_main(command, tmp_path, monkeypatch, capfd)
        assert code == 0, err
    resume = [*args, "rounds=40", f"resume={cut}", f"hydra.run.dir={tmp_path / 'again'}"]
    code, _, err = run_main(resume, tmp_path, monkeypatch, capfd)
    assert code == 0, err
    want, got = _rows(straight / "metrics.csv"), _rows(cut / "metrics.csv")
    assert [r["round"] for r in got] == [r["round"] for r in want]
    for column in ("bits_total", *TIME_COLUMNS):
        assert [r[column] for r in got] == [r[column] for r in want], column
    assert float(got[-1]["comm_time"]) > 0


@pytest.mark.skipif(not (DATASETS / "mnist").is_dir(), reason="offline MNIST not found")
def test_the_neural_loop_times_and_resumes_its_rounds(tmp_path):
    """MNIST, two workers, all-gather: comm_time = rounds x ((p-1) alpha + (p-1)/p bits of
    the round / B), and a run resumed from its checkpoint at round 4 continues it exactly."""
    args = (
        "problem=mnist",
        "problem.train_limit=256",
        "problem.test_limit=50",
        "n_workers=2",
        "eval_every=2",
        "lr=0.05",
        "network=ethernet_10g",
        "network.topology=allgather",
        "network.compute_time=0.5",
        f"data_dir={DATASETS}",
    )
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    straight.mkdir(), cut.mkdir()
    _, want = _run(straight, *args, "rounds=6")
    _run(cut, *args, "rounds=4", "checkpoint_every=2")
    _run(cut, *args, "rounds=6", f"resume={cut}")  # the CLI continues in the run folder
    got = _rows(cut / "metrics.csv")
    for column in ("round", "bits_total", *TIME_COLUMNS):
        assert [r[column] for r in got] == [r[column] for r in want], column
    for row in want:
        k, total = int(row["round"]), int(row["bits_total"])
        comm = k * 20e-6 + 0.5 * total / 1e10  # (p - 1)/p of both workers' bits
        assert float(row["comm_time"]) == pytest.approx(comm, rel=1e-12)
        assert float(row["sim_time"]) == pytest.approx(0.5 * k + comm, rel=1e-15)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["network=ethernet_1g", "network.bandwidth=-1"], "network.bandwidth must be a number > 0"),
        (["network=ethernet_1g", "network.bandwidth=0"], "network.bandwidth must be a number > 0"),
        (["network=ethernet_1g", "network.latency=-1e-6"], "network.latency must be a number >="),
        (["network=ethernet_1g", "network.latency=nan"], "network.latency must be a finite"),
        (["network=ethernet_1g", "network.topology=star"], "expected one of [ps, ps_shared"),
        (["network=ethernet_1g", "network.compute_time=-1"], "network.compute_time must be"),
        (["network=ethernet_1g", "network.bandwith=1e9"], "did you mean network.bandwidth?"),
        (["network=wifi"], "ethernet_1g"),
        (["network.latency=1e-3"], "network.latency has no effect without a network"),
        (["network=none", "network.topology=ring"], "network.topology has no effect without"),
        (["network=ethernet_1g", "network.bandwidth=null"], "needs a latency and a bandwidth"),
    ],
)
def test_bad_network_input_is_one_line(args, message, tmp_path, monkeypatch, capfd):
    run_dir = tmp_path / "run"
    command = [*SYNTH, "rounds=2", *args, f"hydra.run.dir={run_dir}"]
    code, _, err = run_main(command, tmp_path, monkeypatch, capfd)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("compress-bench: error: ") and message in lines[0], err
    assert not run_dir.exists()


def test_help_lists_the_network_presets(tmp_path, monkeypatch, capfd):
    code, out, _ = run_main(["--help"], tmp_path, monkeypatch, capfd)
    assert code == 0
    assert "network: ethernet_10g, ethernet_1g, infiniband_100g, none" in out


# --- report ---------------------------------------------------------------------------------


def _frame(time: bool) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "round": [0, 10, 20],
            "loss_gap": [1.0, 0.1, 0.01],
            "grad_norm_rel": [1.0, 0.3, 0.1],
            "bits": [0.0, 100.0, 200.0],
        }
    )
    if time:
        frame[SIM_TIME] = [0.0, 0.5, 1.0]
    return frame


def test_x_axes_gain_the_simulated_time_only_when_logged():
    assert x_columns([["round", "bits"]], "bits") == ("round", "bits")
    assert x_columns([["round", "bits"], ["round", "bits", SIM_TIME]], "bits") == (
        "round",
        "bits",
        SIM_TIME,
    )


def test_run_figure_draws_the_time_panel_next_to_bits():
    assert len(figure_convex(_frame(False)).axes) == 2
    axes = figure_convex(_frame(True)).axes
    assert [ax.get_xlabel() for ax in axes] == ["round", "uplink bits per worker", SIM_TIME_LABEL]
    neural = pd.DataFrame(
        {"round": [0, 1], "epoch": [0.0, 0.1], "train_loss": [2.0, 1.0], "bits": [0, 9]}
    )
    assert len(figure_neural(neural).axes) == 6
    neural[SIM_TIME] = [0.0, 0.1]
    assert len(figure_neural(neural).axes) == 8


def test_a_sweep_over_presets_with_a_common_topology(tmp_path, monkeypatch, capfd):
    """``-m network=a,b network.topology=ring``: Hydra applies the topology to the default
    (network=none has the keys) before each job picks its preset; the report draws it."""
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *SYNTH,
        "rounds=10",
        "n_workers=2",
        "network=ethernet_1g,infiniband_100g",
        "network.topology=ring",
        f"hydra.sweep.dir={sweep}",
    ]
    code, _, err = run_main(args, tmp_path, monkeypatch, capfd)
    assert code == 0, err
    last = [_rows(sweep / str(job) / "metrics.csv")[-1] for job in (0, 1)]
    assert last[0]["bits_total"] == last[1]["bits_total"]
    slow, fast = (float(row["comm_time"]) for row in last)
    bits = float(last[0]["bits"]) / 10  # per worker and round; ring, p = 2: T = 2 alpha + S/B
    assert slow == pytest.approx(10 * (2 * 50e-6 + bits / 1e9))
    assert fast == pytest.approx(10 * (2 * 2e-6 + bits / 1e11))
    assert (sweep / "comparison.png").is_file()


def test_sweep_comparison_draws_loss_against_simulated_time():
    table = pd.DataFrame({"job": [0, 1], "status": ["completed", "completed"], "label": ["a", "b"]})
    metrics = {0: _frame(True), 1: _frame(True)}
    fig = figure_comparison(table, metrics)
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert labels.count(SIM_TIME_LABEL) == 2  # one per metric row
    assert any(line.get_xdata()[-1] == 1.0 for ax in fig.axes for line in ax.get_lines())
    plain = figure_comparison(table, {0: _frame(False), 1: _frame(False)})
    assert SIM_TIME_LABEL not in [ax.get_xlabel() for ax in plain.axes]
