"""The library's conformance checks (compress_bench/testing.py) over every registered
operator, chain, error-feedback wrapper, layerwise operator and method. Registering an
operator or a method adds its cases here with no new test code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compress_bench import testing
from compress_bench.comm import SimulatedCommunicator
from compress_bench.compressors import build_compressor, build_quantizer
from compress_bench.compressors.chain import chain
from compress_bench.compressors.layerwise import layerwise, tensor_ratio
from compress_bench.layout import Layout
from compress_bench.methods import METHODS
from compress_bench.methods.base import Method
from compress_bench.problems import LogisticRegression
from compress_bench.problems.logreg import synthetic_logreg_data
from compress_bench.problems.splits import split_indices

CASES = testing.operator_cases()


@pytest.mark.parametrize(("case", "build"), CASES, ids=[c for c, _ in CASES])
def test_operator_conformance(case, build):
    op = build()
    ran = testing.check_operator(op)
    # the tags decided what ran: separability for every operator that declares it possible
    separable = not op.tags.needs_objective and not op.tags.collective
    assert ("check_worker_separability" in ran) == separable


LAYERWISE_STACKABLE = [
    (case, build)
    for case, build in CASES
    if case.startswith(("layerwise", "layerwise_repeated"))
    and all(p.tags.stackable for p in build().parts)
]


@pytest.mark.parametrize(
    ("case", "build"), LAYERWISE_STACKABLE, ids=[c for c, _ in LAYERWISE_STACKABLE]
)
def test_layerwise_round_cost_does_not_grow_with_the_tensors(case, build):
    testing.check_layerwise_round_cost(build())


def test_layerwise_cases_with_stackable_parts_are_checked():
    """The tensor-count check runs where the parts declare ``stackable`` (the tags decide):
    TopK, the identity and the low-rank operators at least."""
    ids = " ".join(c for c, _ in LAYERWISE_STACKABLE)
    for name in ("top_k", "identity", "power_sgd", "rsvd"):
        assert f"({name}" in ids, name


def test_round_cost_check_catches_a_sync_and_an_op_per_worker():
    """A check that cannot fail is a defect: an operator that reads a value back to the
    host, and one that loops over the workers, must each fail it."""
    base = chain(build_compressor({"name": "top_k"}, ratio=0.3))

    class Syncing:
        tags = base.tags
        init_state = base.init_state

        def compress(self, G, state, rng, ctx):
            message, state = base.compress(G, state, rng, ctx)
            if bool(G.abs().max() > 0):  # a host sync
                return message, state
            return message, state

    class PerWorker:
        tags = base.tags
        init_state = base.init_state

        def compress(self, G, state, rng, ctx):
            from dataclasses import replace

            message, state = base.compress(G, state, rng, ctx)
            rows = torch.stack([row * 1.0 for row in message.values])  # an op per worker
            return replace(message, values=rows), state

    G = testing.inputs()
    with pytest.raises(AssertionError, match="host syncs"):
        testing.check_round_cost(Syncing(), G)
    with pytest.raises(AssertionError, match="grow with the number of workers"):
        testing.check_round_cost(PerWorker(), G)


def test_layerwise_round_cost_check_catches_a_call_per_tensor():
    """Forced one call per tensor, a stackable layerwise operator's ops grow with the
    tensors: the check must see it."""
    op = layerwise(
        lambda _, s: chain(build_compressor({"name": "top_k"}, 0.3, shape=s)),
        testing.REPEATED_SHAPES,
        stack=False,
    )
    with pytest.raises(AssertionError, match="grow with the number of tensors"):
        testing.check_layerwise_round_cost(op)


def test_cases_cover_the_registries():
    from compress_bench.compressors import COMPRESSORS, QUANTIZERS

    ids = " ".join(c for c, _ in CASES)
    for name in COMPRESSORS:
        assert f"chain({name},none)" in ids and f"layerwise({name})" in ids
    for name in QUANTIZERS:
        assert f"chain(top_k,{name})" in ids and f"ef(top_k,{name})" in ids


def test_separability_check_catches_a_cross_worker_operator():
    """A check that cannot fail is a defect: an operator that mixes rows must fail it."""

    class Mixing:
        tags = chain(build_compressor({"name": "identity"}, ratio=1.0)).tags

        def init_state(self, n, d, device, dtype):
            return None

        def compress(self, G, state, rng, ctx):
            message, _ = chain(build_compressor({"name": "identity"}, ratio=1.0)).compress(
                G, (None,), rng, ctx
            )
            from dataclasses import replace

            return replace(message, values=G - G.mean(0)), state

    with pytest.raises(AssertionError, match="worker 0"):
        testing.check_worker_separability(Mixing(), testing.inputs())


def test_state_round_trip_check_catches_a_lost_stream_position():
    op = chain(build_compressor({"name": "rand_k"}, ratio=0.3))

    class Forgetful:
        tags = op.tags
        init_state = op.init_state

        def compress(self, G, state, rng, ctx):  # ignores the stream it is given
            from compress_bench.rng import Streams

            return op.compress(G, state, Streams(99 + ctx.round_index, G.shape[0]), ctx)

    testing.check_state_round_trip(Forgetful(), testing.inputs())  # no hidden stream: passes

    class Hidden:
        tags = op.tags
        init_state = op.init_state

        def __init__(self):
            from compress_bench.rng import Streams

            self.own = Streams(5, testing.N_WORKERS)  # a stream the checkpoint never sees

        def compress(self, G, state, rng, ctx):
            return op.compress(G, state, self.own, ctx)

    with pytest.raises(AssertionError, match="after a resume"):
        testing.check_state_round_trip(Hidden(), testing.inputs())


def test_layerwise_k_per_tensor_and_bits():
    """k_l = ceil(ratio numel_l) (spec 0.8), bits summed over tensors with each tensor's own
    index width; the state is one entry per tensor."""
    layout = Layout.blocks([64, 32, 16], 112)
    op = layerwise(lambda _, s: chain(build_compressor({"name": "top_k"}, 0.2, shape=s)), layout)
    G = testing.inputs(3, 112)
    message, state = op.compress(G, op.init_state(3, 112, G.device, G.dtype), None, None)
    assert len(state) == 3
    assert message.value_count.tolist() == [13 + 7 + 4] * 3  # ceil(12.8), ceil(6.4), ceil(3.2)
    assert message.bits.tolist() == [13 * 38 + 7 * 37 + 4 * 36] * 3  # 32 + 6, 5, 4 index bits
    for columns, numel in zip(layout.slices(), layout.numels, strict=True):
        k = int(np.ceil(0.2 * numel))
        top = G[:, columns].abs().topk(k, dim=1).indices
        kept = message.sent()[:, columns]
        assert torch.equal(kept.sum(1), torch.full((3,), k))
        assert bool(kept.gather(1, top).all())
    assert tensor_ratio(0.29, 100) == 0.29  # the ceiling of 28.999999999999996 is 29


def test_layerwise_message_assembles_on_demand_and_averages_per_tensor():
    """The concatenated message's workers' mean is taken tensor by tensor without building
    the (n, d) values; it equals the mean of the assembled values bit for bit, and values and
    mask equal the tensors' side by side."""
    layout = Layout.blocks([64, 32, 16], 112)
    op = layerwise(lambda _, s: chain(build_compressor({"name": "top_k"}, 0.3, shape=s)), layout)
    G = testing.inputs(4, 112)
    message, _ = op.compress(G, op.init_state(4, 112, G.device, G.dtype), None, None)
    comm = SimulatedCommunicator()
    mean = comm.mean(message)
    assert "values" not in vars(message)  # nothing assembled for the mean
    assert torch.equal(mean, message.values.mean(dim=0))
    parts = message.parts
    assert torch.equal(message.values, torch.cat([p.values for p in parts], dim=1))
    assert torch.equal(message.kept, torch.cat([p.sent() for p in parts], dim=1))
    assert torch.equal(comm.mean(message), mean)  # from the assembled values now
    assert torch.equal(message.bits, sum(p.bits for p in parts))


def test_layerwise_shared_seed_tensors_draw_their_own_supports():
    """Shared-seed RandK per tensor: equal-size tensors get independent supports (each its
    own shared stream, which the server rebuilds from (seed, worker, round, tensor)); the
    first tensor draws from the whole vector's stream, as a global operator does."""
    from compress_bench.compressors import RoundContext
    from compress_bench.compressors.selection import top_k_mask
    from compress_bench.rng import Streams

    layout = Layout.blocks([40, 40, 40], 120)
    cfg = {"name": "rand_k", "shared_seed": True}
    op = layerwise(lambda _, s: chain(build_compressor(cfg, 0.25, shape=s)), layout)
    G = testing.inputs(2, 120)
    message, _ = op.compress(
        G, op.init_state(2, 120, G.device, G.dtype), Streams(7, 2), RoundContext(3)
    )
    kept = [message.sent()[:, columns] for columns in layout.slices()]
    assert not torch.equal(kept[0], kept[1]) and not torch.equal(kept[1], kept[2])
    for tensor, mask in enumerate(kept):
        server = top_k_mask(Streams(7, 2).shared_round_uniform(3, 40, tensor=tensor), 10)
        assert torch.equal(mask, server)


def test_layerwise_of_one_tensor_is_the_global_operator_up_to_the_ceiling():
    """With one tensor and ratio * d an integer, layerwise equals the global operator."""
    G = testing.inputs(3, 30)

    def build(shape=None):
        return chain(
            build_compressor({"name": "top_k"}, 0.2, shape=shape),
            build_quantizer({"name": "natural"}),
        )

    from compress_bench.rng import Streams

    op = layerwise(lambda _, s: build(s), Layout.flat(30))
    a, _ = op.compress(G, ((None,),), Streams(0, 3), None)
    b, _ = build().compress(G, (None,), Streams(0, 3), None)
    assert torch.equal(a.values, b.values) and torch.equal(a.bits, b.bits)


# --- methods --------------------------------------------------------------------------------


def _logreg(n: int) -> LogisticRegression:
    features, labels = synthetic_logreg_data(90, 6, seed=2, label_noise=0.5)
    shards = split_indices(labels, n, "iid", 0)
    return LogisticRegression(features, labels, shards, 0.1, np.zeros(6), "t")


METHOD_OPERATORS = [("top_k", "natural"), ("rand_k", "none"), ("identity", "sign")]


@pytest.mark.parametrize("ops", METHOD_OPERATORS, ids=["+".join(o) for o in METHOD_OPERATORS])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_conformance(name, ops):
    c, q = ops
    op = chain(build_compressor({"name": c}, ratio=0.34), build_quantizer({"name": q}))
    options = {"alpha": 0.5} if name == "diana" and not op.unbiased else {}
    problem = _logreg(4)
    method = METHODS[name](op, 0.2, n_workers=4, d=problem.d, **options)
    ran = testing.check_method(method, problem)
    assert "check_method_worker_separability" in ran


METHOD_COST_OPERATORS = [
    ("top_k", "power_of_two"),
    ("top_k", "natural"),
    ("identity", "none"),
    ("rand_k", "none"),
    ("identity", "sign"),
]


@pytest.mark.parametrize(
    "ops", METHOD_COST_OPERATORS, ids=["+".join(o) for o in METHOD_COST_OPERATORS]
)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_round_cost(name, ops):
    """A round of every method (worker phase, aggregation, server phase, the optimizer, the
    bit count) reads nothing back to the host on the portable kernels, and its ops do not
    grow with the workers."""
    c, q = ops

    def build(n):
        op = chain(build_compressor({"name": c}, ratio=0.34), build_quantizer({"name": q}))
        options = {"alpha": 0.5} if name == "diana" and not op.unbiased else {}
        problem = _logreg(n)
        return METHODS[name](op, 0.2, n_workers=n, d=problem.d, **options), problem

    testing.check_method_round_cost(build)


def test_method_round_cost_with_momentum_and_majority_vote():
    from compress_bench.methods.dcgd import DCGD
    from compress_bench.optim import ServerOptimizer

    def build(n):
        op = chain(build_compressor({"name": "identity"}, 1.0), build_quantizer({"name": "sign"}))
        opt = ServerOptimizer(lr=0.1, momentum=0.9, weight_decay=5e-4)
        problem = _logreg(n)
        method = DCGD(op, 0.1, n_workers=n, d=problem.d, optimizer=opt, aggregation="majority_vote")
        return method, problem

    testing.check_method_round_cost(build)


def test_every_method_class_is_concrete_and_the_check_catches_one_that_is_not():
    for cls in METHODS.values():
        testing.check_method_class(cls)

    class Half(Method):
        """A method without a server phase."""

        name = "half"

        def worker(self, x, ev, state, streams, round_index, objective=None):
            raise NotImplementedError

    with pytest.raises(AssertionError, match="abstract"):
        testing.check_method_class(Half)


def test_resnet18_round_on_the_portable_kernels_meets_the_issue_17_target():
    """ResNet18's layout (62 tensors), TopK + power-of-two per tensor, DCGD with SGD momentum:
    at most 400 aten ops per round at n = 2, no host sync, the same ops at n = 8 (3,156 ops
    and 238 syncs before issue 17; benchmarks/bench_round_ops.py prints the other operators)."""
    from compress_bench.layout import Layout
    from compress_bench.models import build_model

    layout = Layout.of(build_model("resnet18"))
    assert len(layout) == 62
    ops = [
        testing.layout_round_cost(layout, {"name": "top_k"}, {"name": "power_of_two"}, n, rounds=2)
        for n in (2, 8)
    ]
    assert sum(ops[0].values()) <= 400, ops[0].most_common(10)
    testing.assert_flat_cost(ops[0], ops[1], "the number of workers")
