"""compress-bench: communication compression in distributed optimization."""

import os as _os

__version__ = "0.1.0"

# OpenMP threads that wait at the end of a parallel op spin only briefly before they sleep
# (libgomp's default spins 300,000 times). With threads > 1 beside a busy process, a spinning
# thread holds a core that a straggling thread of the same op needs: 2-thread runs became
# 7-19x slower than on an idle machine, where 3,000 spins cost little against the default
# (benchmarks/bench_threads.py; the figures are in the README, `threads`). Runs use 1 thread
# unless `threads` says otherwise, so by default this changes nothing. libgomp (the OpenMP
# of torch's CPU builds) reads it once, when torch loads it, so it is set here, before any
# module of the package imports torch; a value the user set (GOMP_SPINCOUNT, or
# OMP_WAIT_POLICY, which libgomp lets decide the spin count when GOMP_SPINCOUNT is unset)
# is kept. It changes no result: only how idle threads wait.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "3000"
