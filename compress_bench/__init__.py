"""compress-bench: communication compression in distributed optimization."""

import os

# A network's (n, d) gradients and messages are fresh CPU tensors of tens of MB every round;
# without transparent huge pages each one page-faults its whole size again (ResNet18, 45 MB:
# 18 ms to allocate and fill against 2.7 ms with them). torch reads this once, at its first
# CPU allocation, so it is set here, before any; a value the user set is kept.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
