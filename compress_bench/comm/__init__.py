"""Communicators: how the workers' messages reach the server."""

from compress_bench.comm.simulated import SimulatedCommunicator

__all__ = ["SimulatedCommunicator"]
