"""Compression inside PyTorch's DistributedDataParallel: a communication hook built from any
registered operator and method (dcgd, ef, ef21), for a user's own training script::

    from compress_bench import ddp
    model = DistributedDataParallel(net)
    hook = ddp.register(model, compressor="top_k", ratio=0.01, method="ef")
    # ... train as usual; the optimizer steps along what the hook returns

or, built by hand, ``state = ddp.CompressionHook(model, ...)`` and
``model.register_comm_hook(state, ddp.comm_hook)``.

What the hook does with a bucket (a flat buffer of several parameters' gradients): rank r is
worker r, with one row (its local gradient, as DDP hands it over, not divided); the method's
worker phase compresses it (per parameter tensor, ``granularity="layer"``, k_l = ceil(ratio
numel_l) as ``granularity=layer`` in the runner; or over the whole bucket, ``"global"``), the
communicator aggregates the messages across ranks, and the method's server phase turns the
aggregate into the direction, which the hook returns in place of DDP's mean gradient. The
method's ``lr`` and server optimizer are not used: the user's optimizer applies the direction.
With ``compressor="identity"`` and ``method="dcgd"`` the hook returns DDP's average.

Communication (:class:`HookCommunicator`): a dense message (identity, quantizers) travels by
one ``all_reduce`` (divided by the world size first, as DDP's default hook does); sparse
messages (TopK's values and indices) by the all-gathers of
:class:`~compress_bench.comm.distributed.TorchDistributedCommunicator`, since an all-reduce
cannot sum them; a per-worker low-rank message (rsvd, PowerSGD ``form=per_worker``) by one
all-gather of its factors (every rank rebuilds the mean). Collective PowerSGD exchanges its
factors inside the round only, once: ``P`` by an all-reduce, every worker's ``M_w^T P^`` by
an all-gather, from which each rank computes the next ``Q`` and the message's mean; its
message arrives averaged (``Message.averaged``) and is not sent again. With 2 ranks the
numbers are the simulator's bit for bit; with more, an all-reduce sums in the backend's order
(the last bits may differ).

The method is built from its operator and the communicator, no problem
(:func:`build_method`): the gradients are DDP's, and an operator that queries the objective
(the md_* family) is refused.

Collectives run synchronously inside the hook, which returns an already-completed future:
simple and correct, but no overlap of communication with the rest of the backward pass.

State. Everything a rank remembers (EF's error, EF21's g_i and g, an operator's state such as
PowerSGD's Q, the random streams, the step count) is created lazily on the first call and kept
**per parameter**, not per bucket: DDP rebuilds its buckets after the first iteration (another
order, or other groupings of the parameters), and a fresh DDP model after a restart starts
from its initial buckets again, so a state keyed by the bucket index would be applied to the
wrong coordinates. A bucket's state is assembled from its parameters' states at every call
and split back afterwards. With ``granularity="global"`` the operator's own state (if any)
depends on the bucket's composition and is kept per set of parameters; a new set starts from
a fresh one. :meth:`CompressionHook.state_dict` / :meth:`~CompressionHook.load_state_dict` save
and restore it with the user's checkpoint; every rank saves its own (the memories are per
worker).

Random operators draw from the rank's worker streams ``Streams(seed, [rank])`` (the simulator
gives worker i the same streams), one set per hook, in the order DDP reduces the buckets;
the round index is the training step (the hook's calls with ``bucket.is_last()``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from compress_bench.comm.distributed import TorchDistributedCommunicator
from compress_bench.compressors import build_compressor, build_quantizer
from compress_bench.compressors.base import Message
from compress_bench.compressors.chain import chain
from compress_bench.compressors.layerwise import layerwise
from compress_bench.errors import ConfigError
from compress_bench.layout import Layout
from compress_bench.methods import METHODS
from compress_bench.methods.base import Evaluation, Method
from compress_bench.rng import Streams

__all__ = [
    "HOOK_METHODS",
    "CompressionHook",
    "HookCommunicator",
    "build_method",
    "comm_hook",
    "register",
]

log = logging.getLogger("compress_bench")

#: the methods the hook runs (their state is split per parameter, see the module docstring)
HOOK_METHODS = ("dcgd", "ef", "ef21")
GRANULARITIES = ("layer", "global")
STATE_FORMAT = "compress_bench.ddp/1"


class HookCommunicator(TorchDistributedCommunicator):
    """The torch.distributed communicator with an ``all_reduce`` where one suffices: a dense
    message's mean and ``all_reduce_mean`` (collective PowerSGD's ``P``); sparse messages are
    gathered as in the parent class. ``all_gather_rows`` lets collective PowerSGD gather its
    ``M_w^T P^`` once in the round and hand over its message already averaged
    (``Message.averaged``), which :meth:`mean` returns without sending anything."""

    def mean(self, message: Message) -> torch.Tensor:
        if message.averaged is not None:  # a collective operator averaged it in the round
            return message.averaged
        parts = message.parts
        if parts is not None and any(
            p.factors is not None or p.averaged is not None for p in parts
        ):
            return self._mean_of_parts(parts)
        if message.kept is not None:
            return super().mean(message)
        values = message.values
        if values.shape[0] != 1:
            raise ValueError(f"a rank holds one worker's row, got {values.shape[0]}")
        return self._all_reduce_mean(values[0])

    def all_reduce_mean(self, X: torch.Tensor) -> torch.Tensor:
        return self._all_reduce_mean(X)

    def all_gather_rows(self, X: torch.Tensor) -> torch.Tensor:
        """Every worker's rows of X (this rank's, (1, ...)), in rank order: (world, ...)."""
        return self._gather_equal(X.contiguous(), concatenate=True)

    def _mean_of_parts(self, parts: tuple[Message, ...]) -> torch.Tensor:
        """A layerwise message with low-rank parts, averaged part by part: a part averaged in
        the round (collective PowerSGD, ``Message.averaged``) sends nothing more; the other
        low-rank parts' factors travel in one all-gather (``r (m + c)`` values per matrix,
        not its ``m c`` entries) and each rank rebuilds ``mean_w left_w right_w^T`` as the
        simulator does; the dense parts travel in one all-reduce, sparse ones are gathered."""
        factors = [
            f.reshape(-1)
            for p in parts
            if p.factors is not None and p.averaged is None
            for f in p.factors
        ]
        # (world, total): the same on every rank
        gathered = self._gather_equal(torch.cat(factors)) if factors else None
        dense = [
            p.values[0]
            for p in parts
            if p.factors is None and p.kept is None and p.averaged is None
        ]
        dense_mean = self._all_reduce_mean(torch.cat(dense)) if dense else None
        out, at_factor, at_dense = [], 0, 0
        for p in parts:
            if p.averaged is not None:
                out.append(p.averaged)
            elif p.factors is not None:
                left, right = p.factors  # (1, m, r), (1, c, r)
                blocks = []
                for f in (left, right):
                    block = gathered[:, at_factor : at_factor + f.numel()]
                    blocks.append(block.reshape(self.world, *f.shape[1:]))
                    at_factor += f.numel()
                out.append((blocks[0] @ blocks[1].mT).reshape(self.world, -1).mean(dim=0))
            elif p.kept is None:
                out.append(dense_mean[at_dense : at_dense + p.d])
                at_dense += p.d
            else:
                out.append(super().mean(p))
        return torch.cat(out)

    def _all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        out = t / self.world  # a new tensor, divided first as DDP's default hook does
        dist.all_reduce(out, group=self.group)
        self._count(out)
        return out


def _options(value: str | Mapping[str, Any] | None, default: str) -> dict[str, Any]:
    """A name or a config mapping (``{"name": "power_sgd", "rank": 2}``) as a config dict."""
    if value is None:
        return {"name": default}
    if isinstance(value, str):
        return {"name": value}
    out = dict(value)
    out.setdefault("name", default)
    return out


def build_method(
    layout: Layout,
    *,
    compressor: str | Mapping[str, Any] = "identity",
    ratio: float = 0.01,
    method: str = "dcgd",
    quantizer: str | Mapping[str, Any] | None = None,
    granularity: str = "layer",
    method_options: Mapping[str, Any] | None = None,
    n_workers: int = 1,
    communicator: Any = None,
) -> Method:
    """The method the hook runs on a bucket of ``layout`` (``n_workers`` 1: a rank's; the
    simulator's reference takes n workers and its own communicator): built from its operator
    and communicator alone, no problem (the gradients come from DDP; an operator that queries
    the objective is refused)."""
    if method not in HOOK_METHODS:
        raise ConfigError(f"the DDP hook runs methods {', '.join(HOOK_METHODS)}, got {method!r}")
    if granularity not in GRANULARITIES:
        raise ConfigError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    c_cfg, q_cfg = _options(compressor, "identity"), _options(quantizer, "none")

    def op_for(name: str, shape: tuple[int, ...]):
        return chain(build_compressor(c_cfg, ratio=ratio, shape=shape), build_quantizer(q_cfg))

    if granularity == "layer":
        op: Any = layerwise(op_for, layout)
    else:
        c = build_compressor(c_cfg, ratio=ratio, global_shape=(layout.d,))
        if type(c).support == "factors":  # a low-rank operator: a vector is sent dense
            raise ConfigError(
                f"{c.name} needs a matrix: a bucket is a vector; use granularity='layer'"
            )
        op = chain(c, build_quantizer(q_cfg))
    if op.tags.needs_objective:
        raise ConfigError(
            f"{c_cfg['name']} queries the objective, which a communication hook cannot see"
        )
    return METHODS[method](
        op,
        1.0,
        n_workers=n_workers,
        d=layout.d,
        communicator=communicator,
        **(method_options or {}),
    )


def _clone(tree: Any) -> Any:
    """Tensors of a state copied (a view would save its whole storage), structure kept."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: _clone(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_clone(v) for v in tree)
    return tree


class CompressionHook:
    """The state of the communication hook (:func:`comm_hook`); see the module docstring.

    ``model``: the DDP model (or the module it wraps), for the parameters' names, by which
    the state is kept. ``compressor`` / ``quantizer``: a registered name or a config mapping
    with options (``{"name": "power_sgd", "rank": 2}``); ``ratio``: the sparsifiers' kept
    fraction; ``method``: dcgd, ef or ef21 (``method_options``: e.g. ``{"init":
    "compressed"}`` for ef21, ``{"aggregation": "majority_vote"}`` for dcgd with
    quantizer=sign); ``granularity``: "layer" (per parameter tensor) or "global" (the whole
    bucket); ``seed``: the random streams' seed; ``group``: the process group."""

    def __init__(
        self,
        model: nn.Module,
        compressor: str | Mapping[str, Any] = "identity",
        ratio: float = 0.01,
        method: str = "dcgd",
        quantizer: str | Mapping[str, Any] | None = None,
        granularity: str = "layer",
        method_options: Mapping[str, Any] | None = None,
        seed: int = 0,
        group: dist.ProcessGroup | None = None,
    ):
        module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        self.names = {id(p): name for name, p in module.named_parameters()}
        self.d = sum(p.numel() for p in module.parameters() if p.requires_grad)
        self.config = {
            "compressor": _options(compressor, "identity"),
            "quantizer": _options(quantizer, "none"),
            "ratio": float(ratio),
            "method": method,
            "granularity": granularity,
            "method_options": dict(method_options or {}),
        }
        # fail now, not inside the backward pass, on a bad name or option
        self._build(Layout.flat(4))
        self.communicator = HookCommunicator(group)
        self.rank, self.world = self.communicator.rank, self.communicator.world
        self.seed = int(seed)
        self.streams = Streams(self.seed, [self.rank])
        self.step = 0  # the training steps seen (the round index)
        self.bits = 0  # uplink bits this rank sent, counted from the messages' wire format
        self.params: dict[str, dict[str, Any]] = {}  # per-parameter state
        self.buckets: dict[str, Any] = {}  # granularity=global: the operator's, per bucket
        self._methods: dict[tuple, tuple[Method, Any]] = {}

    # -- the hook -------------------------------------------------------------------------

    def _build(self, layout: Layout, comm=None):
        cfg = self.config
        return build_method(
            layout,
            compressor=cfg["compressor"],
            ratio=cfg["ratio"],
            method=cfg["method"],
            quantizer=cfg["quantizer"],
            granularity=cfg["granularity"],
            method_options=cfg["method_options"],
            communicator=comm,
        )

    def layout(self, bucket: dist.GradBucket) -> Layout:
        """The bucket's parameters in the order of its buffer."""
        try:
            names = tuple(self.names[id(p)] for p in bucket.parameters())
        except KeyError:
            raise RuntimeError("the bucket holds a parameter of another model") from None
        shapes = tuple(tuple(p.shape) or (1,) for p in bucket.parameters())
        layout = Layout(names, shapes)
        if layout.d != bucket.buffer().numel():
            raise RuntimeError(f"bucket of {bucket.buffer().numel()} entries, layout {layout.d}")
        return layout

    def __call__(self, bucket: dist.GradBucket) -> torch.Tensor:
        """The bucket's direction, written into its buffer (which is returned)."""
        buffer = bucket.buffer()
        layout = self.layout(bucket)
        key = (layout, buffer.device, buffer.dtype)
        if key not in self._methods:
            method = self._build(layout, self.communicator)
            self._methods[key] = (method, method.init_state(buffer))
        method, template = self._methods[key]
        state = self._merge(template, layout)
        grads = buffer.detach().reshape(1, -1).clone()  # the method may keep it (EF21's g_i)
        out = method.worker(None, Evaluation(None, grads), state, self.streams, self.step)
        direction, new_state = method.server(method.aggregate(out.message), out.state)
        self._split(new_state, layout)
        fixed = out.message.fixed_bits
        self.bits += fixed if fixed is not None else int(out.message.bits.sum())
        buffer.copy_(direction.reshape(buffer.shape))
        if bucket.is_last():
            self.step += 1
        return buffer

    # -- the state, per parameter -----------------------------------------------------------

    def _merge(self, template: dict[str, Any], layout: Layout) -> dict[str, Any]:
        """The bucket's method state from its parameters' (the template's parts where a
        parameter has none yet)."""
        fresh = self._pieces(template, layout)
        records = [self.params.get(name, fresh[name]) for name in layout.names]
        method = self.config["method"]
        op = template["operator"]
        inner = op[1] if method == "ef" else op
        if self.config["granularity"] == "layer":
            inner = tuple(r["operator"] for r in records)
        else:
            inner = self.buckets.get("\n".join(layout.names), inner)
        state = dict(template)
        if method == "ef":
            state["operator"] = (torch.cat([r["error"] for r in records], dim=1), inner)
        else:
            state["operator"] = inner
        if method == "ef21":
            state["g_workers"] = torch.cat([r["g_workers"] for r in records], dim=1)
            state["g"] = torch.cat([r["g"] for r in records])
            state["started"] = all(r["started"] for r in records)
        return state

    def _pieces(self, state: dict[str, Any], layout: Layout) -> dict[str, dict[str, Any]]:
        """A bucket's method state as one record per parameter (and, for a global operator,
        the operator's state of the bucket)."""
        method = self.config["method"]
        op = state["operator"]
        error, inner = op if method == "ef" else (None, op)
        records: dict[str, dict[str, Any]] = {name: {} for name in layout.names}
        for t, (name, columns) in enumerate(zip(layout.names, layout.slices(), strict=True)):
            r = records[name]
            if self.config["granularity"] == "layer":
                r["operator"] = inner[t]
            if error is not None:
                r["error"] = error[:, columns]
            if method == "ef21":
                r["g_workers"] = state["g_workers"][:, columns]
                r["g"] = state["g"][columns]
                r["started"] = bool(state["started"])
        return records

    def _split(self, state: dict[str, Any], layout: Layout) -> None:
        self.params.update(self._pieces(state, layout))
        if self.config["granularity"] == "global":
            op = state["operator"]
            self.buckets["\n".join(layout.names)] = op[1] if self.config["method"] == "ef" else op

    def state_dict(self) -> dict[str, Any]:
        """This rank's state, for its checkpoint (tensors, plain data: ``torch.load(...,
        weights_only=True)`` reads it back)."""
        return {
            "format": STATE_FORMAT,
            "config": _clone(self.config),
            "rank": self.rank,
            "world": self.world,
            "step": self.step,
            "bits": self.bits,
            "streams": self.streams.get_state(),
            "params": _clone(self.params),
            "buckets": _clone(self.buckets),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a hook of the same configuration and rank."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a DDP hook state (format {state.get('format')!r})")
        if state["config"] != self.config:
            raise ValueError(
                f"the hook state was saved with {state['config']}, this hook runs {self.config}"
            )
        if (state["rank"], state["world"]) != (self.rank, self.world):
            raise ValueError(
                f"the hook state is rank {state['rank']} of {state['world']}'s; this is rank "
                f"{self.rank} of {self.world} (every rank loads its own)"
            )
        self.step, self.bits = int(state["step"]), int(state["bits"])
        self.streams.set_state(state["streams"])
        self.params = _clone(dict(state["params"]))
        self.buckets = _clone(dict(state["buckets"]))

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank put on the wire for the hook's collectives (its send buffers)."""
        return self.communicator.bytes_sent

    def compression(self, d: int | None = None) -> float:
        """Uplink bits sent per step relative to 32-bit dense gradients of d entries (the
        model's trainable entries by default)."""
        d = self.d if d is None else d
        return self.bits / max(1, self.step) / (32 * d) if d else math.nan


def comm_hook(state, bucket):  # no annotations: DDP compares them with its own classes
    """The communication hook: ``model.register_comm_hook(state, comm_hook)`` with ``state``
    a :class:`CompressionHook`. Runs the round synchronously and returns a completed
    future holding the bucket's direction."""
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(state(bucket))
    return future


def register(model: nn.parallel.DistributedDataParallel, **options: Any) -> CompressionHook:
    """Build a :class:`CompressionHook` for ``model`` (options: its arguments) and register
    it as the model's communication hook; returns the hook state (for ``state_dict``)."""
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        raise TypeError(f"register needs a DistributedDataParallel model, got {type(model)}")
    state = CompressionHook(model, **options)
    model.register_comm_hook(state, comm_hook)
    return state
