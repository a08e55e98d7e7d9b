"""Conformance checks for operators and methods, as library code (scikit-learn's
``check_estimator``, for the idea): the test suite runs them over every registered compressor
and quantizer, every (compressor, quantizer) chain, ``error_feedback(op)``, ``layerwise(op)``
on a three-tensor layout and every registered method, and a new operator or method written
outside this package can run them too::

    from compress_bench.testing import check_operator
    check_operator(my_chain)            # raises AssertionError naming the failed check

Which checks apply is decided by the operator's declared :class:`~compress_bench.compressors.
chain.Tags`, never by its name:

  shapes and dtypes      always: (n, d) values in the input's dtype, (n,) int64 bits
  bits from the format   always: Message.bits equals the bits counted from the wire format
  payload round trip     always: each worker's payload (indices, scalar, symbols, factors) is
                         its bits long and decodes to the simulator's values
  zero to zero           tags.zero_to_zero: a zero input gives a zero message
  seeded determinism     always: the same streams give the same output, bit for bit
  deterministic tag      tags.deterministic: different streams give the same output
  worker separability    unless tags.collective or tags.needs_objective: row i of the output
                         depends only on row i of the input and worker i's streams
                         (``Streams(seed, workers=[i])``), scikit-learn's subset invariance
  state round trip       always: the state saved with ``torch.save`` and read back with
                         ``torch.load(weights_only=True)`` continues the run bit for bit
  state stability        always: the state keeps its structure, shapes and dtypes over rounds
  round cost             always: on the portable kernels (compressors/paths.py, what an
                         accelerator runs) a round reads nothing back to the host (no
                         :data:`SYNC_OPS`) and dispatches the same aten ops, one for one, at
                         n and at 2 n + 1 workers; a layerwise operator whose parts are
                         ``stackable`` dispatches the same ops for twice the tensors of the
                         same shapes (:func:`check_layerwise_round_cost`). Methods: the
                         same for a round of ``method.step`` (:func:`check_method_round_cost`)

The counts are taken on the CPU under a ``TorchDispatchMode`` (:class:`OpCounter`): every aten
op is a kernel launch on an accelerator, so the count does not depend on the device.
"""

from __future__ import annotations

import inspect
import io
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from compress_bench.comm import SimulatedCommunicator
from compress_bench.compressors.base import RoundContext
from compress_bench.layout import Layout
from compress_bench.methods.base import evaluate
from compress_bench.problems.quadratic import SeparableQuadratic
from compress_bench.rng import Streams

#: n, d and rounds the operator checks run with by default (d splits into the 3-tensor layout)
N_WORKERS, DIM, ROUNDS = 4, 30, 3
#: the three-tensor layout layerwise operators are checked on (7 + 15 + 8 = 30 = DIM)
THREE_TENSORS = Layout(("weight", "bias", "scale"), ((7,), (3, 5), (2, 2, 2)))
#: a layout with repeated shapes (12 + 3 + 12 + 3 = 30): stackable operators compress the
#: tensors of one shape as one batch, which must not change a number
REPEATED_SHAPES = Layout(("w1", "b1", "w2", "b2"), ((3, 4), (3,), (3, 4), (3,)))
#: the matrix the low-rank operators see x as when checked on the whole vector (5 x 6 = DIM)
MATRIX = (5, 6)
#: option sets of the low-rank operators checked besides their defaults
LOW_RANK_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "power_sgd": [
        {"form": "per_worker"},
        {"form": "per_worker", "warm_start": False},
        {"orthogonalization": "qr", "rank": 3},
        {"start_round": 1, "min_compression_rate": 1.0},
    ],
    "rsvd": [{"rank": 1, "power_iterations": 0}],
}


def quadratic(G: torch.Tensor) -> SeparableQuadratic:
    """An objective for the operators that query one (the importance-based family)."""
    d = G.shape[1]
    curvature = torch.linspace(0.5, 2.0, d, dtype=G.dtype, device=G.device)
    return SeparableQuadratic(curvature, torch.ones_like(G))


def inputs(n: int = N_WORKERS, d: int = DIM, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """(n, d) test inputs: Gaussian rows with a few exact ties and zeros."""
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(n, d, generator=gen, dtype=torch.float64)
    G[:, ::5] = torch.round(G[:, ::5])  # ties and zeros
    return G.to(dtype)


def run_operator(
    op, G: torch.Tensor, streams: Streams, rounds: int = ROUNDS, state=None, start: int = 0
):
    """Rounds ``start .. rounds - 1`` of ``op`` on G (from ``state``, or the initial state);
    returns the messages and the states after each."""
    n, d = G.shape
    state = op.init_state(n, d, G.device, G.dtype) if state is None else state
    problem = quadratic(G)
    # each worker's loss from its id only (separability), decreasing over the rounds so that
    # the loss-comparison rules (eSGD) see both branches
    losses = torch.tensor([1.0 + 0.25 * i for i in streams.workers], dtype=G.dtype)
    args = (SimulatedCommunicator(),) if op.tags.collective else ()
    messages, states = [], []
    for t in range(start, rounds):
        ctx = RoundContext(
            round_index=t,
            x=torch.zeros(d, dtype=G.dtype),
            lr=0.3,
            objective=problem,
            losses=losses / (1 + t),
        )
        message, state = op.compress(G, state, streams, ctx, *args)
        messages.append(message)
        states.append(state)
    return messages, states


#: aten ops that read a device value back to the host (a stall of an accelerator's queue):
#: ``bool()``, ``int()``, ``float()``, ``.item()`` (``_local_scalar_dense``), and the ops whose
#: output size depends on the values
SYNC_OPS = frozenset(
    {
        "_local_scalar_dense",
        "nonzero",
        "masked_select",
        "unique",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "equal",
        "is_nonzero",
        "item",
    }
)


def syncs(ops: Counter[str]) -> dict[str, int]:
    """The host syncs among counted ops, by name."""
    return {name: count for name, count in ops.items() if name in SYNC_OPS and count}


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched inside a ``with`` block, by name (``ops``): what a round
    costs in kernel launches, and its host syncs (``ops["_local_scalar_dense"]``: a tensor
    read back by ``bool()``, ``int()``, ``float()`` or ``.item()``)."""

    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


# --- state helpers ----------------------------------------------------------------------------


def state_signature(state: Any) -> Any:
    """The structure of a state with every tensor replaced by (shape, dtype, device)."""
    if isinstance(state, torch.Tensor):
        return ("tensor", tuple(state.shape), state.dtype, state.device.type)
    if isinstance(state, dict):
        return {k: state_signature(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return (type(state).__name__, tuple(state_signature(v) for v in state))
    return type(state).__name__


def save_and_load(value: Any) -> Any:
    """``value`` through torch.save and ``torch.load(weights_only=True)`` (a checkpoint)."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same(a: Any, b: Any, what: str) -> None:
    """Equal structure and bit-identical tensors (NaNs compared as equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{what}: tensor vs {type(b).__name__}"
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: {a.shape}/{a.dtype}"
        assert (
            torch.equal(a, b)
            or (torch.isnan(a) == torch.isnan(b)).all()
            and torch.equal(a.nan_to_num(), b.nan_to_num())
        ), f"{what}: values differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{what}: keys differ"
        for key in a:
            assert_same(a[key], b[key], f"{what}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{what}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{what}[{i}]")
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


# --- operator checks ---------------------------------------------------------------------------


def check_shapes_and_dtypes(op, G: torch.Tensor) -> None:
    (message,), _ = run_operator(op, G, Streams(0, G.shape[0]), rounds=1)
    assert message.values.shape == G.shape, "values must have the input's shape"
    assert message.values.dtype == G.dtype, "values must keep the input's dtype"
    assert message.bits.shape == (G.shape[0],) and message.bits.dtype == torch.int64
    assert bool((message.bits >= 0).all()), "bits must be non-negative"


def check_bits_from_format(op, G: torch.Tensor) -> None:
    """Message.bits equals what its format(s) count for the values on the wire."""
    (message,), _ = run_operator(op, G, Streams(0, G.shape[0]), rounds=1)
    parts = message.parts or (message,)
    counted = sum(p.format.bits(p.value_count) for p in parts)
    assert torch.equal(counted, message.bits), f"bits {message.bits} vs format {counted}"


def check_payload_round_trip(op, G: torch.Tensor) -> None:
    """Every worker's payload (``Message.payload``) has the reported bits (up to the padding
    of its last byte) and decodes, from the static formats, the counts and the shared
    supports alone, to the simulator's values (float32 fields within float32 rounding; the
    low-rank factors within the rounding of a float32 product)."""
    from compress_bench.compressors.wire import decode_payload

    (message,), _ = run_operator(op, G, Streams(0, G.shape[0]), rounds=1)
    parts = message.parts or (message,)
    formats = [p.format for p in parts]
    for worker in range(G.shape[0]):
        buffer = message.payload(worker)
        bits = int(message.bits[worker])
        assert 8 * buffer.numel() - 7 <= bits <= 8 * buffer.numel(), (buffer.numel(), bits)
        counts = [int(p.value_count[worker]) for p in parts]
        supports = [
            p.sent()[worker] if f.support == "shared" else None
            for p, f in zip(parts, formats, strict=True)
        ]
        decoded = decode_payload(buffer, formats, counts, supports)
        want = message.values[worker].double()
        scale = 1.0 + float(want.abs().max()) if want.numel() else 1.0
        torch.testing.assert_close(decoded, want, rtol=1e-5, atol=1e-6 * scale)


def check_zero_to_zero(op, G: torch.Tensor) -> None:
    (message,), _ = run_operator(op, torch.zeros_like(G), Streams(0, G.shape[0]), rounds=1)
    assert bool((message.values == 0).all()), "a zero input must give a zero message"


def check_seeded_determinism(op, G: torch.Tensor) -> None:
    n = G.shape[0]
    first, _ = run_operator(op, G, Streams(7, n))
    second, _ = run_operator(op, G, Streams(7, n))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.values, b.values) and torch.equal(a.bits, b.bits), "not repeatable"


def check_deterministic_tag(op, G: torch.Tensor) -> None:
    n = G.shape[0]
    first, _ = run_operator(op, G, Streams(1, n))
    second, _ = run_operator(op, G, Streams(2, n))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.values, b.values), "tagged deterministic but depends on the stream"


def check_worker_separability(op, G: torch.Tensor) -> None:
    """Row i of the batched output equals what worker i alone produces with its own streams."""
    n = G.shape[0]
    together, _ = run_operator(op, G, Streams(5, n))
    for i in range(n):
        alone, _ = run_operator(op, G[i : i + 1], Streams(5, [i]))
        for t, (a, b) in enumerate(zip(together, alone, strict=True)):
            assert torch.equal(a.values[i], b.values[0]), f"worker {i} round {t}: values"
            assert int(a.bits[i]) == int(b.bits[0]), f"worker {i} round {t}: bits"


def check_state_round_trip(op, G: torch.Tensor) -> None:
    """Saving state and streams after round 1 and loading them (weights_only) continues the
    run exactly as if nothing had happened."""
    n = G.shape[0]
    streams = Streams(3, n)
    straight, _ = run_operator(op, G, streams, rounds=ROUNDS)
    streams = Streams(3, n)
    _, states = run_operator(op, G, streams, rounds=1)
    saved = save_and_load({"state": states[0], "streams": streams.get_state()})
    resumed_streams = Streams(3, n)
    resumed_streams.set_state(saved["streams"])
    rest, _ = run_operator(op, G, resumed_streams, state=saved["state"], start=1)
    for t, message in enumerate(rest, start=1):
        assert torch.equal(message.values, straight[t].values), f"round {t} after a resume"


def check_state_stability(op, G: torch.Tensor) -> None:
    n, d = G.shape
    initial = op.init_state(n, d, G.device, G.dtype)
    _, states = run_operator(op, G, Streams(0, n), rounds=ROUNDS)
    signatures = [state_signature(s) for s in states]
    assert all(s == signatures[0] for s in signatures), "state changes structure over rounds"
    if initial is not None and states[0] is not None:
        # an initial None in a slot (nothing computed yet) may fill in after round 0
        assert _compatible(state_signature(initial), signatures[0]), "init_state differs"


def _compatible(initial: Any, later: Any) -> bool:
    if initial == "NoneType":
        return True
    if isinstance(initial, dict):
        return initial.keys() == later.keys() and all(
            _compatible(initial[k], later[k]) for k in initial
        )
    if isinstance(initial, tuple) and initial and initial[0] in ("tuple", "list"):
        return len(initial[1]) == len(later[1]) and all(
            _compatible(a, b) for a, b in zip(initial[1], later[1], strict=True)
        )
    return initial == later


def _context(G: torch.Tensor, t: int) -> RoundContext:
    """Round t's context for inputs G: x = 0 on a separable quadratic, lr 0.1, unit losses."""
    x = torch.zeros(G.shape[1], dtype=G.dtype)
    losses = torch.ones(G.shape[0], dtype=G.dtype)
    return RoundContext(round_index=t, x=x, lr=0.1, objective=quadratic(G), losses=losses)


def assert_flat_cost(small: Counter[str], large: Counter[str], what: str) -> None:
    """No host sync, and the same ops (name by name) for the larger case."""
    assert not syncs(small), f"host syncs on the portable path: {syncs(small)}"
    if small != large:
        grown = {k: (small[k], large[k]) for k in set(small) | set(large) if small[k] != large[k]}
        raise AssertionError(f"ops grow with {what}: {grown} (op: count before, after)")


def check_round_cost(op, G: torch.Tensor) -> None:
    """No host sync on the portable kernels, and the same ops at n and 2 n + 1 workers."""
    n, d = G.shape
    small, large = _round_ops(op, d, n), _round_ops(op, d, 2 * n + 1)
    assert_flat_cost(small, large, "the number of workers")


def check_layerwise_round_cost(op) -> None:
    """A layerwise operator whose parts are all ``stackable``: the same ops with every tensor
    of its layout twice and three times (tensors of equal shape stack into one call; a
    shape alone is one plain call, so the comparison starts from two of each)."""

    def repeated(times: int) -> Layout:
        names = tuple(f"{name}_{c}" for c in range(times) for name in op.layout.names)
        return Layout(names, tuple(op.layout.shapes) * times)

    two, three = repeated(2), repeated(3)
    once = _round_ops(op.on_layout(two), two.d)
    more = _round_ops(op.on_layout(three), three.d)
    assert_flat_cost(once, more, "the number of tensors")


def _round_ops(op, d: int, n: int = N_WORKERS, rounds: int = 2) -> Counter[str]:
    """The aten ops of ``op``'s last of ``rounds`` rounds on ``n`` workers, on the portable
    kernels (earlier rounds fill caches: a constant built once is not a round's cost); the
    message's values and bits are read, as the aggregation and the bit count read them."""
    from compress_bench.compressors.paths import portable

    G = inputs(n, d)
    streams = Streams(0, n)
    with portable():
        state = op.init_state(n, d, G.device, G.dtype)
        for t in range(rounds):
            with OpCounter() as counter:
                message, state = op.compress(G, state, streams, _context(G, t))
                message.values, message.bits  # noqa: B018 - read, as a round reads them
    return counter.ops


def check_method_round_cost(build: Callable[[int], tuple[Any, Any]], n: int = 2) -> None:
    """A round of ``method.step`` (``build(n)`` builds the method for n workers and the
    problem they evaluate, a pair) reads nothing back to the host on the portable kernels and
    dispatches the same ops at n and 2 n + 1 workers (the aggregation, the server phase and
    the optimizer included)."""
    small, large = _method_round_ops(*build(n)), _method_round_ops(*build(2 * n + 1))
    assert_flat_cost(small, large, "workers")


def _method_round_ops(method, problem, rounds: int = 3) -> Counter[str]:
    from compress_bench.compressors.paths import portable

    n = method.n_workers
    streams = Streams(0, n)
    x = problem.initial_point()
    state = method.init_state(x)
    with portable():
        for k in range(rounds):
            ev = evaluate(problem, x)
            with OpCounter() as counter:
                proposal = method.step(x, ev, state, streams, k, objective=problem)
                proposal.total_bits()
            x, state = proposal.x, proposal.state
    return counter.ops


def layout_round_cost(
    layout: Layout,
    compressor: dict[str, Any],
    quantizer: dict[str, Any],
    n: int,
    *,
    method: str = "dcgd",
    ratio: float = 0.2,
    momentum: float = 0.9,
    dtype: torch.dtype = torch.float32,
    rounds: int = 3,
    portable_kernels: bool = True,
) -> Counter[str]:
    """The aten ops of the last of ``rounds`` rounds of ``method.step`` with ``compressor``
    and ``quantizer`` per tensor of ``layout`` (k_l = ceil(ratio numel_l), as
    ``granularity=layer``) on ``n`` workers with random gradients, an SGD server optimizer
    with ``momentum`` and weight decay, the bit count read: a model's round without its
    forward/backward (``benchmarks/bench_round_ops.py`` prints it for ResNet18). Operators
    that need an objective cannot run here."""
    from compress_bench.compressors import build_compressor, build_quantizer
    from compress_bench.compressors.chain import chain
    from compress_bench.compressors.layerwise import layerwise
    from compress_bench.compressors.paths import portable
    from compress_bench.methods import METHODS
    from compress_bench.methods.base import Evaluation
    from compress_bench.optim import ServerOptimizer

    def op_for(name: str, shape: tuple[int, ...]):
        c = build_compressor(compressor, ratio=ratio, shape=shape)
        return chain(c, build_quantizer(quantizer))

    lr = 0.001
    optimizer = ServerOptimizer(lr=lr, momentum=momentum, weight_decay=5e-4)
    op = layerwise(op_for, layout)
    m = METHODS[method](op, lr, n_workers=n, d=layout.d, optimizer=optimizer)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(layout.d, generator=generator, dtype=dtype)
    streams = Streams(0, n)
    with portable(portable_kernels):
        state = m.init_state(x)
        for k in range(rounds):
            grads = torch.randn(n, layout.d, generator=generator, dtype=dtype)
            ev = Evaluation(torch.ones(n, dtype=dtype), grads)
            with OpCounter() as counter:
                proposal = m.step(x, ev, state, streams, k)
                proposal.total_bits()
            x, state = proposal.x, proposal.state
    return counter.ops


def operator_checks(op) -> list[Callable]:
    """The checks that apply to ``op``, chosen by its declared tags."""
    tags = op.tags
    checks = [
        check_shapes_and_dtypes,
        check_seeded_determinism,
        check_state_round_trip,
        check_state_stability,
        check_round_cost,
    ]
    checks.append(check_bits_from_format)
    checks.append(check_payload_round_trip)
    if tags.zero_to_zero:
        checks.append(check_zero_to_zero)
    if tags.deterministic:
        checks.append(check_deterministic_tag)
    if not tags.collective and not tags.needs_objective:
        checks.append(check_worker_separability)
    return checks


def check_operator(op, G: torch.Tensor | None = None) -> list[str]:
    """Run every applicable check on ``op``; returns the names of the checks run."""
    G = inputs() if G is None else G
    names = []
    for check in operator_checks(op):
        check(op, G)
        names.append(check.__name__)
    return names


# --- method checks -----------------------------------------------------------------------------


def check_method_class(cls) -> None:
    """The class is concrete: every abstract method implemented."""
    assert not inspect.isabstract(cls), f"{cls.__name__} leaves {cls.__abstractmethods__} abstract"
    assert getattr(cls, "name", None), f"{cls.__name__} has no name"
    assert cls.__doc__ or inspect.getmodule(cls).__doc__, f"{cls.__name__} has no docstring"


def run_method(
    method, problem, streams: Streams, rounds: int = ROUNDS, x=None, state=None, start=0
):
    """``rounds`` rounds of a method on ``problem`` (the loop's part: the workers' evaluation
    at every x, the objective passed to the step) from x^0 (or from ``x`` and ``state`` at
    round ``start``, as a resumed run continues); returns the proposals."""
    x = problem.initial_point() if x is None else x
    state = method.init_state(x) if state is None else state
    proposals = []
    for k in range(start, start + rounds):
        proposal = method.step(x, evaluate(problem, x), state, streams, k, objective=problem)
        x, state = proposal.x, proposal.state
        proposals.append(proposal)
    return proposals


def check_method_state_round_trip(method, problem, seed: int = 0) -> None:
    n = method.n_workers
    straight = run_method(method, problem, Streams(seed, n), rounds=ROUNDS)
    streams = Streams(seed, n)
    first = run_method(method, problem, streams, rounds=1)[0]
    saved = save_and_load({"x": first.x, "state": first.state, "streams": streams.get_state()})
    resumed = Streams(seed, n)
    resumed.set_state(saved["streams"])
    rest = run_method(
        method, problem, resumed, rounds=ROUNDS - 1, x=saved["x"], state=saved["state"], start=1
    )
    for k, (a, b) in enumerate(zip(straight[1:], rest, strict=True), start=1):
        assert torch.equal(a.x, b.x), f"x after round {k} differs after a resume"


def check_method_state_stability(method, problem, seed: int = 0) -> None:
    proposals = run_method(method, problem, Streams(seed, method.n_workers), rounds=ROUNDS)
    signatures = [state_signature(p.state) for p in proposals]
    assert all(s == signatures[0] for s in signatures), "method state changes over rounds"


def check_method_worker_separability(method, problem, seed: int = 0) -> None:
    """Row i of the worker phase depends only on worker i's gradient, state and streams."""
    n = method.n_workers
    x = problem.initial_point()
    ev = evaluate(problem, x)
    state = method.init_state(x)
    together = method.worker(x, ev, state, Streams(seed, n), 0)
    for i in range(n):
        rows = _rows(state, i, n)
        single_ev = type(ev)(ev.losses[i : i + 1], ev.grads[i : i + 1])
        alone = method.worker(x, single_ev, rows, Streams(seed, [i]), 0)
        assert torch.equal(together.message.values[i], alone.message.values[0]), f"worker {i}"


def _rows(state: Any, i: int, n: int) -> Any:
    """Worker i's part of a state: rows of per-worker (leading dimension n) tensors."""
    if isinstance(state, torch.Tensor):
        return state[i : i + 1] if state.dim() >= 1 and state.shape[0] == n else state
    if isinstance(state, dict):
        return {k: _rows(v, i, n) for k, v in state.items()}
    if isinstance(state, tuple | list):
        return type(state)(_rows(v, i, n) for v in state)
    return state


def check_method(method, problem) -> list[str]:
    """Every method check on a built method (its operator separable or not), run on
    ``problem`` (its workers' gradients, and the objective where the operator queries one;
    ``problem.n_workers`` and ``d`` are the method's)."""
    assert (problem.n_workers, problem.d) == (method.n_workers, method.d), (
        f"the method runs {method.n_workers} workers of d = {method.d}, the problem has "
        f"{problem.n_workers} of d = {problem.d}"
    )
    check_method_class(type(method))
    names = ["check_method_class"]
    for check in (check_method_state_round_trip, check_method_state_stability):
        check(method, problem)
        names.append(check.__name__)
    tags = method.operator.tags
    if not tags.collective and not tags.needs_objective:
        check_method_worker_separability(method, problem)
        names.append("check_method_worker_separability")
    return names


# --- what the suite runs the checks over ---------------------------------------------------------


def operator_cases(ratio: float = 0.3) -> list[tuple[str, Callable[[], Any]]]:
    """(id, builder) of every operator the suite checks, from the registries: every
    compressor chained with no quantizer and with power-of-two rounding, every quantizer
    after TopK and after the identity, each of those under ``error_feedback``, and each
    compressor ``layerwise`` on :data:`THREE_TENSORS`."""
    from compress_bench.compressors import (
        COMPRESSORS,
        QUANTIZERS,
        build_compressor,
        build_quantizer,
    )
    from compress_bench.compressors.chain import chain, error_feedback
    from compress_bench.compressors.layerwise import layerwise

    def make(c: str, q: str, shape: tuple[int, ...] | None = None):
        compressor = build_compressor({"name": c}, ratio=ratio, shape=shape)
        return chain(compressor, build_quantizer({"name": q}))

    pairs = [(c, q) for c in sorted(COMPRESSORS) for q in ("none", "power_of_two")]
    pairs += [(c, q) for q in sorted(QUANTIZERS) for c in ("identity", "top_k")]
    pairs = list(dict.fromkeys(pairs))
    cases: list[tuple[str, Callable[[], Any]]] = []
    for c, q in pairs:
        cases.append((f"chain({c},{q})", lambda c=c, q=q: make(c, q)))
        cases.append((f"ef({c},{q})", lambda c=c, q=q: error_feedback(make(c, q))))
    for c in sorted(COMPRESSORS):
        cases.append(
            (
                f"layerwise({c})",
                lambda c=c: layerwise(lambda name, shape: make(c, "none", shape), THREE_TENSORS),
            )
        )
        if COMPRESSORS[c].stackable:
            cases.append(
                (
                    f"layerwise_repeated({c})",
                    lambda c=c: layerwise(  # stacked groups, as on an accelerator
                        lambda name, shape: make(c, "none", shape), REPEATED_SHAPES, stack=True
                    ),
                )
            )
    for c in sorted(COMPRESSORS):
        if COMPRESSORS[c].support != "factors":
            continue
        for options in [{}, *LOW_RANK_VARIANTS.get(c, [])]:
            cfg = {"name": c, **options}
            tag = ",".join(f"{k}={v}" for k, v in options.items())

            def matrix(cfg=cfg):
                return chain(build_compressor(cfg, ratio=ratio, global_shape=MATRIX))

            def repeated(cfg=cfg):
                return layerwise(
                    lambda name, shape: chain(build_compressor(cfg, ratio=ratio, shape=shape)),
                    REPEATED_SHAPES,
                    stack=True,  # stacked groups, as on an accelerator
                )

            cases.append((f"matrix({c}[{tag}])", matrix))
            cases.append((f"ef(matrix({c}[{tag}]))", lambda m=matrix: error_feedback(m())))
            cases.append((f"layerwise_repeated({c}[{tag}])", repeated))
    return cases
