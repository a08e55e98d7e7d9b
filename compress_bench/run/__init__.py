"""A run: built from its config, then its rounds, one loop for every problem and process.

The modules follow a run's life:

  build.py    Run and build_run: the config validated into a problem, an operator, a step and
              a method (resolve_lr, resolve_threads, build_operator)
  session.py  the start (summary head, resume checked whole, checkpoints at round starts, the
              torch.distributed ranks' included) and the end (summary.json on a full disk,
              one line for a failed write), the progress display
  rounds.py   the one loop: ``state = run_round(session, state)``, and execute(run, out_dir)
  metrics.py  what differs between a convex and a neural problem: the row of metrics.csv and
              when it is written, the divergence rule, the tol metrics, the summary's figures
  ledger.py   BitLedger: the bits spent, the bit budget, simulated network time
  state.py    RunState and its atomic checkpoints

The simulator and every torch.distributed rank (dist.py) run ``build_run`` then ``execute``.
Names are imported on first use (``from compress_bench.run import build_run, execute``), so
``compress_bench.run.state`` is importable without the problems and methods.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Run": "build",
    "build_run": "build",
    "execute": "rounds",
    "run_round": "rounds",
    "RunState": "state",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
