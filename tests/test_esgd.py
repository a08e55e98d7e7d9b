"""eSGD (spec 19, a reconstruction) as an operator: its state through the round context's
losses, conservation of the gradient mass with beta = 1, bits, and a run through a method
(which fills RoundContext.losses). The rule itself is tested in test_esgd_math.py; the
conformance checks run through tests/test_library_conformance.py."""

from __future__ import annotations

import torch

from compress_bench import testing
from compress_bench.compressors import RoundContext, build_compressor
from compress_bench.compressors.chain import chain
from compress_bench.methods import evaluate
from compress_bench.rng import Streams


def test_conservation_with_beta_one_and_bits():
    """With beta = 1: sum_t message_t + r_T = sum_t g_t, exactly; k (32 + ceil(log2 d)) bits."""
    op = chain(build_compressor({"name": "esgd", "beta": 1.0}, ratio=0.2))
    n, d = 3, 40
    state = op.init_state(n, d, torch.device("cpu"), torch.float64)
    streams, sent, total = Streams(0, n), torch.zeros(n, d, dtype=torch.float64), 0
    for t in range(6):
        G = testing.inputs(n, d, seed=t)
        losses = torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64) / (1 + t % 3)
        message, state = op.compress(G, state, streams, RoundContext(t, losses=losses))
        sent, total = sent + message.values, total + G
        assert message.bits.tolist() == [8 * (32 + 6)] * n
        assert message.value_count.tolist() == [8] * n
    residual = state[0]["residual"]
    torch.testing.assert_close(sent + residual, total, rtol=0, atol=1e-12)


def test_a_method_gives_esgd_the_workers_losses():
    from compress_bench.config import compose_config
    from compress_bench.runner import build_run

    run = build_run(
        compose_config(
            "problem=synthetic_logreg", "compressor=esgd", "method=dcgd", "lr=0.1", "n_workers=3"
        )
    )
    x = run.problem.initial_point()
    state = run.method.init_state(x)
    for k in range(3):
        ev = evaluate(run.problem, x)
        proposal = run.method.step(x, ev, state, run.streams, k)
        x, state = proposal.x, proposal.state
        esgd_state = state["operator"][0]
        torch.testing.assert_close(esgd_state["prev_loss"], ev.losses)
        assert esgd_state["round"] == k + 1
