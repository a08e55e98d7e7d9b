"""compress-bench: communication compression in distributed optimization."""

import os as _os

__version__ = "0.1.0"

# OpenMP threads that wait at the end of a parallel op sleep at once instead of spinning
# (libgomp's default spins 300,000 times first). On an idle machine the difference is within
# noise; beside another busy process a spinning thread holds a core that the other threads
# of the same op wait for, and a 2-thread run became 5-14x slower than a 1-thread one
# (benchmarks/bench_threads.py measures both). OpenMP reads this once, when torch loads it,
# so it is set here, before any module of the package imports torch; a value the user set
# (OMP_WAIT_POLICY, or GOMP_SPINCOUNT, which takes precedence in libgomp) is kept. It changes
# no result: only how idle threads wait.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
