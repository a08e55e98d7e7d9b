"""compress-bench: communication compression in distributed optimization."""

__version__ = "0.1.0"
