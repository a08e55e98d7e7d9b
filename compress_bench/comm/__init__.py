"""Communicators: how the workers' messages reach the server (the only place that
aggregates; see comm/base.py for the protocol)."""

from compress_bench.comm.base import Communicator
from compress_bench.comm.simulated import SimulatedCommunicator

__all__ = ["Communicator", "SimulatedCommunicator"]
