"""Where the run's pieces used to be, re-exported: they live in the ``compress_bench.run``
package now (run/build.py: Run, build_run and the resolution of the step, operator and
threads; run/rounds.py: execute, the one round loop). Scripts importing
``compress_bench.runner`` keep working."""

from compress_bench.run.build import (
    Run,
    build_operator,
    build_run,
    nominal_k,
    plain_config,
    resolve_device,
    resolve_lr,
    resolve_threads,
)
from compress_bench.run.rounds import execute

__all__ = [
    "Run",
    "build_operator",
    "build_run",
    "execute",
    "nominal_k",
    "plain_config",
    "resolve_device",
    "resolve_lr",
    "resolve_threads",
]
