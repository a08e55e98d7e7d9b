"""Which implementation a round's kernels take: the CPU's fast paths, or the portable ones.

Two implementations of some steps give the same numbers:

* **portable** (every device; the default off the CPU): branch-free tensor code with no host
  sync (no ``bool()``, ``int()``, ``.item()`` or ``nonzero`` on a value the round computed)
  and a number of ops that does not grow with the workers or, under ``layerwise``, with the
  tensors of a shape (one stacked call per shape). On an accelerator each op is a kernel
  launch and each sync a stall of the whole queue, so this is what a GPU runs.
* **CPU fast paths** (the default on the CPU): where a host decision saves work, e.g. TopK's
  sample-and-bracket selection for long rows (several passes instead of a full top-k), the
  early exit when no tie straddles TopK's threshold, the power-of-two rounding's skipped
  saturation pass, one call per tensor under ``layerwise`` (a launch costs little on the CPU,
  the gather copy of a stacked group costs more than it saves). A sync there costs nothing.

The choice depends on the device only (never on d alone), so a run's numbers do not depend
on it. :func:`portable` forces the portable paths on the CPU: the op-count and sync checks
of :mod:`compress_bench.testing` count under it what an accelerator would launch, and
``kernels=portable`` runs a whole CPU run that way (to profile it, or to check it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

KERNELS = ("auto", "portable")

_portable: ContextVar[bool] = ContextVar("compress_bench_portable_kernels", default=False)


def cpu_fast(t: torch.Tensor) -> bool:
    """True when ``t``'s kernels may take the CPU's host-syncing fast paths."""
    return t.device.type == "cpu" and not _portable.get()


@contextlib.contextmanager
def portable(enabled: bool = True) -> Iterator[None]:
    """Inside the block, every device takes the portable paths (``enabled=False``: no
    change)."""
    token = _portable.set(bool(enabled) or _portable.get())
    try:
        yield
    finally:
        _portable.reset(token)
