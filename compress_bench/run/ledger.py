"""The bit ledger: the uplink bits a run has spent (spec 0.6, and the thesis convention in a
column of its own), the ``max_bits`` budget, and with a ``network`` (spec 28) the simulated
communication time of the rounds applied."""

from __future__ import annotations

from typing import Any

from compress_bench.comm.network import NetworkModel, sim_time
from compress_bench.compressors.bits import thesis_bits
from compress_bench.config import network_node
from compress_bench.report import THESIS_BITS_COLUMN

#: the columns a run with a network (spec 28) adds at the end of metrics.csv
TIME_COLUMNS = ("comm_time", "sim_time")


class BitLedger:
    """Cumulative uplink bits: the exact encoding (spec 0.6) and, with bits_convention=thesis,
    the thesis code's accounting in its own column; ``max_bits`` counts in the chosen one.

    With a ``network`` (spec 28, :class:`~compress_bench.comm.network.NetworkModel`) it also
    keeps the cumulative simulated communication time of the rounds applied, from each
    worker's bits, and stamps the rows with ``comm_time`` and ``sim_time`` (compute time, the
    measured ``wall_time`` or ``compute_time`` seconds per round, plus ``comm_time``).

    A round's cost is a tuple of host integers: (spec bits of all workers, thesis bits), and
    with a network each worker's bits after them, so that the ranks of a distributed run can
    sum their costs element by element (a rank fills its own workers' slots from
    ``first_worker`` on, zeros elsewhere) and every rank times the same whole round."""

    def __init__(
        self,
        n_workers: int,
        thesis: bool,
        network: NetworkModel | None = None,
        compute_time: float | None = None,
        first_worker: int = 0,
    ):
        self.n, self.thesis = n_workers, thesis
        self.total, self.thesis_total = 0, 0  # all workers, exact integers
        self.network, self.compute_time = network, compute_time
        self.first = first_worker  # the worker of the message's first row
        self.comm_time = 0.0  # seconds, the rounds applied (with a network)

    @property
    def columns(self) -> tuple[str, ...]:
        """The metrics columns the ledger adds after the loop's own (none without a network)."""
        return TIME_COLUMNS if self.network is not None else ()

    def cost(self, proposal) -> tuple[int, ...]:
        """(spec bits of all workers, thesis bits) of a round, and with a network the bits of
        each of the n workers (0 for those whose rows the message does not hold)."""
        thesis = int(thesis_bits(proposal.message).sum()) if self.thesis else 0
        if self.network is None:
            return proposal.total_bits(), thesis  # no read-back for fixed-size messages
        per_worker = [0] * self.n
        held = worker_bits(proposal)
        per_worker[self.first : self.first + len(held)] = held
        return sum(held), thesis, *per_worker

    @property
    def budget_total(self) -> int:
        return self.thesis_total if self.thesis else self.total

    def per_worker_after(self, spent: tuple[int, ...]) -> float:
        return (self.budget_total + spent[1 if self.thesis else 0]) / self.n

    def add(self, spent: tuple[int, ...]) -> None:
        self.total += spent[0]
        self.thesis_total += spent[1]
        if self.network is not None:  # the round's time, from every worker's bits
            self.comm_time += self.network.round_time(spent[2:])

    def row(self) -> dict[str, Any]:
        row = {"bits": self.total / self.n, "bits_total": self.total}
        if self.thesis:
            row[THESIS_BITS_COLUMN] = self.thesis_total / self.n
        return row

    def stamp(self, row: dict[str, Any]) -> None:
        """With a network, add ``comm_time`` and ``sim_time`` to a metrics row (whose
        ``round`` rounds have run, in ``wall_time`` seconds); nothing without one."""
        if self.network is None:
            return
        row["comm_time"] = self.comm_time
        row["sim_time"] = sim_time(
            self.comm_time, row["wall_time"], row["round"], self.compute_time
        )

    def time_state(self) -> dict[str, Any]:
        """The checkpoint's ledger entry of the simulated time ({} without a network)."""
        return {"comm_time": self.comm_time} if self.network is not None else {}

    def restore_time(self, ledger: dict[str, Any]) -> None:
        """The simulated time of a checkpoint's ledger (a resumed run continues it)."""
        if self.network is not None:
            self.comm_time = float(ledger["comm_time"])


def worker_bits(proposal) -> list[int]:
    """The round's uplink bits of each worker as host integers: from the message's fixed size
    when it has one (no read-back), else one read-back of ``bits``."""
    message = proposal.message
    fixed = message.fixed_bits
    if fixed is not None:
        return [fixed] * message.value_count.shape[0]
    return [int(b) for b in proposal.bits.tolist()]


def time_totals(row: dict[str, Any]) -> dict[str, Any]:
    """The summary's simulated totals (spec 28) from the last metrics row: ``comm_time`` and
    ``sim_time`` when the run has a network, else nothing (the summary as without one)."""
    return {f"total_{key}": row[key] for key in TIME_COLUMNS if key in row}


def ledger_needs(needs: dict[str, tuple[str, ...]], ledger: BitLedger) -> dict[str, Any]:
    """A loop's checkpoint entries (``needs`` of :func:`start_run`) with the ledger's own."""
    extra = tuple(ledger.time_state())
    return {**needs, "ledger": needs.get("ledger", ()) + extra} if extra else needs


def ledger_for(cfg, n_workers: int, thesis: bool, first_worker: int = 0) -> BitLedger:
    """The run's ledger: with ``cfg.network`` (spec 28), one that also keeps simulated time
    (``first_worker``: the worker of the proposals' first row, a distributed rank's)."""
    node = network_node(cfg)
    network = NetworkModel.from_config(node)
    compute_time = None if node is None else node.get("compute_time")
    return BitLedger(n_workers, thesis, network, compute_time, first_worker)
