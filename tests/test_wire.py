"""Every registered operator's message packs into bytes and back (spec 0.6 encoding rules).

For each compressor x quantizer: decode(encode(message)) reproduces the compressed vector
(symbols exactly; float32 fields within float32 rounding, which is how the spec counts them),
and the packed length equals the reported bits up to the padding of the last byte. Inputs
include zeros, ties, negative zeros, huge and tiny magnitudes, and k >= d.
"""

from __future__ import annotations

import pytest
import torch

from compress_bench.compressors import (
    COMPRESSORS,
    QUANTIZERS,
    RoundContext,
    build_compressor,
    build_quantizer,
)
from compress_bench.compressors.chain import chain
from compress_bench.compressors.wire import decode, encode, receiver_view
from compress_bench.methods import evaluate
from compress_bench.problems.quadratic import SeparableQuadratic
from compress_bench.rng import Streams

SYMBOL_FORMATS = ("power_of_two", "sign")


def inputs(d: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(d)
    rows = [
        torch.randn(d, generator=gen, dtype=torch.float64),
        torch.zeros(d, dtype=torch.float64),
        torch.randint(-2, 3, (d,), generator=gen).double(),  # ties and zeros
        -torch.zeros(d, dtype=torch.float64),  # negative zeros
        torch.randn(d, generator=gen, dtype=torch.float64) * 1e30,  # huge
        torch.randn(d, generator=gen, dtype=torch.float64) * 1e-30,  # tiny
    ]
    rows[2][0] = -0.0
    return torch.stack(rows)


def compress(cname: str, qname: str, G: torch.Tensor, ratio: float, **options):
    """The message of chain(C, Q) for G: the chain declares its format (no name lookup)."""
    op = chain(
        build_compressor({"name": cname, **options}, ratio=ratio), build_quantizer({"name": qname})
    )
    n, d = G.shape
    problem = SeparableQuadratic(torch.linspace(0.5, 2.0, d, dtype=G.dtype), torch.ones_like(G))
    ctx = RoundContext(round_index=2, x=torch.zeros(d, dtype=G.dtype), lr=0.3, objective=problem)
    message, _ = op.compress(G, op.init_state(n, d, G.device, G.dtype), Streams(3, n), ctx)
    return message


@pytest.mark.parametrize("ratio", [0.3, 1.0])
@pytest.mark.parametrize("d", [1, 2, 13, 112])
@pytest.mark.parametrize("qname", sorted(QUANTIZERS))
@pytest.mark.parametrize("cname", sorted(COMPRESSORS))
def test_round_trip_and_bits(cname, qname, d, ratio):
    G = inputs(d)
    message = compress(cname, qname, G, ratio)
    layout = message.format
    expected = receiver_view(message, layout)
    # the bits reported equal the bits counted from the payload's format
    assert torch.equal(layout.bits(message.value_count), message.bits)
    for worker in range(G.shape[0]):
        data = encode(message, worker)
        bits = int(message.bits[worker])
        assert 8 * len(data) - 7 <= bits <= 8 * len(data), (len(data), bits)
        support = message.sent()[worker] if layout.support == "shared" else None
        decoded = decode(data, layout, support)
        want = expected[worker]
        if layout.values in SYMBOL_FORMATS and not layout.scalar:
            assert torch.equal(decoded, want), (decoded, want)
        else:  # a float32 field on the wire: within float32 rounding of the value
            finite = torch.isfinite(want.to(torch.float32))
            torch.testing.assert_close(decoded[finite], want[finite], rtol=2**-23, atol=1e-45)
        # whatever was not sent decodes to 0
        assert (decoded[~message.sent()[worker]] == 0).all()


def test_shared_seed_message_carries_no_indices():
    G = inputs(112)
    assert compress("rand_k", "none", G, 0.2).format.support == "indices"
    msg = compress("rand_k", "none", G, 0.2, shared_seed=True)
    layout = msg.format
    assert layout.support == "shared"
    data = encode(msg, 0)
    assert len(data) == 22 * 32 // 8  # values only
    torch.testing.assert_close(decode(data, layout, msg.sent()[0]), msg.values[0].float().double())
    with pytest.raises(ValueError, match="shared"):
        decode(data, layout)


@pytest.mark.parametrize("method", ["ef21", "diana"])
def test_the_methods_uncompressed_first_round_is_on_the_wire(method):
    """EF21 and DIANA start by sending the gradients themselves: that message has the dense
    float32 format, its packed length is its bits (32 d) and it decodes to the gradients."""
    from compress_bench.config import compose_config
    from compress_bench.runner import build_run

    args = ("problem=synthetic_logreg", f"method={method}", "method.init=gradient", "lr=0.1")
    run = build_run(compose_config(*args, "compressor=rand_k", "n_workers=3"))
    x = run.problem.initial_point()
    ev = evaluate(run.problem, x)
    message = run.method.step(x, ev, run.method.init_state(x), run.streams, 0).message
    d = run.problem.d
    assert message.format.support == "dense" and message.bits.tolist() == [32 * d] * 3
    assert torch.equal(message.format.bits(message.value_count), message.bits)
    for worker in range(3):
        data = encode(message, worker)
        assert 8 * len(data) == 32 * d
        decoded = decode(data, message.format)
        want = ev.grads[worker].to(torch.float32).double()
        assert torch.equal(decoded, want)
