"""Simulated communication time: the alpha-beta model of spec 28 (a model, not a measurement).

A round's uplink of ``p`` workers, worker i sending ``b_i`` bits (the exact bits of spec 0.6),
over a network of per-message latency ``alpha`` (seconds) and bandwidth ``B`` (bits per
second), with ``S = max_i b_i``, takes ``T`` seconds:

    ps          T = alpha + max_i b_i / B               parameter server, one link per worker,
                                                        the server's downlink not counted
    ps_shared   T = alpha + (sum_i b_i) / B             parameter server behind one shared link
    ring        T = 2 (p - 1) alpha + 2 ((p - 1)/p) S / B      ring all-reduce (summable messages:
                                                        dense values, shared-seed supports,
                                                        low-rank factors); messages of unequal
                                                        size count as the largest, S
    allgather   T = (p - 1) alpha + ((p - 1)/p) (sum_i b_i) / B   ring all-gather (messages with
                                                        their own supports: TopK indices)

A round then takes ``t_compute + T`` (:func:`sim_time`), ``t_compute`` the measured wall time
or a configured constant per round. Pure host arithmetic on Python ints and floats: the bits
are host integers already (``BitLedger``), so the model adds no device sync.

References: R. W. Hockney, "The communication challenge for MPP: Intel Paragon and Meiko CS-2",
Parallel Computing 20(3), 1994 (the alpha-beta model); P. Patarasuk, X. Yuan, "Bandwidth optimal
all-reduce algorithms for clusters of workstations", JPDC 69(2), 2009 (ring all-reduce).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: the topologies of spec 28, in the order the docs list them
TOPOLOGIES = ("ps", "ps_shared", "ring", "allgather")


@dataclass(frozen=True)
class NetworkModel:
    """A network of latency ``latency_s`` seconds per message and bandwidth
    ``bandwidth_bits_per_s``, its uplink organised as ``topology`` (:data:`TOPOLOGIES`)."""

    latency_s: float
    bandwidth_bits_per_s: float
    topology: str = "ps"

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"unknown topology {self.topology!r}; one of {', '.join(TOPOLOGIES)}")
        if not 0 <= self.latency_s < float("inf"):
            raise ValueError(f"latency must be a finite number >= 0, got {self.latency_s}")
        if not 0 < self.bandwidth_bits_per_s < float("inf"):
            raise ValueError(
                f"bandwidth must be a finite number > 0, got {self.bandwidth_bits_per_s}"
            )

    def round_time(self, worker_bits: Sequence[int]) -> float:
        """Seconds of one round's uplink, ``worker_bits[i]`` the bits worker i sends (p =
        len(worker_bits) workers); the formula of the topology (module docstring)."""
        p = len(worker_bits)
        if p == 0:
            raise ValueError("a round needs at least one worker")
        alpha, bandwidth = self.latency_s, self.bandwidth_bits_per_s
        if self.topology == "ps":
            return alpha + max(worker_bits) / bandwidth
        if self.topology == "ps_shared":
            return alpha + sum(worker_bits) / bandwidth
        share = (p - 1) / p  # the part of the data each ring step leaves to the others
        if self.topology == "ring":
            return 2 * (p - 1) * alpha + 2 * share * max(worker_bits) / bandwidth
        return (p - 1) * alpha + share * sum(worker_bits) / bandwidth  # allgather

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> NetworkModel | None:
        """The model of a ``network`` config node (``latency``, ``bandwidth``, ``topology``),
        None for no network."""
        if node is None:
            return None
        topology = node.get("topology", "ps")
        topology = getattr(topology, "name", topology)  # an enum from a structured config
        return cls(float(node["latency"]), float(node["bandwidth"]), str(topology))


def sim_time(comm_time: float, wall_time: float, rounds: int, compute_time: float | None) -> float:
    """Simulated time after ``rounds`` rounds: the compute time (``compute_time`` seconds per
    round when given, else the measured ``wall_time``) plus the cumulative ``comm_time``."""
    compute = wall_time if compute_time is None else compute_time * rounds
    return compute + comm_time
