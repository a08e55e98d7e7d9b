"""The jobs a sweep declared, from ``<sweep dir>/multirun.yaml``, next to the jobs it left.

Hydra writes multirun.yaml (the full config) when the sweep starts, before its first job. The
basic sweeper turns the task overrides (``hydra.overrides.task``, after the sweeper's own
``hydra.sweeper.params``) into jobs: each ``key=a,b`` list (or ``range()``, ``glob()``) is one
factor of a cartesian product, taken in order, and job n gets the n-th combination. This module
repeats exactly that with Hydra's own code (:class:`OverridesParser` and
:meth:`BasicSweeper.split_arguments`) rather than parsing the overrides again, so that a job
killed before its folder existed is still known: its number and its overrides.

The declared jobs are unknown (and the report falls back on the folders found, with a
warning) when multirun.yaml is absent or unreadable, the sweeper is not Hydra's basic one, or
an override cannot be expanded. A ``shuffle()`` sweep gives the number of jobs but not which
job got which overrides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from compress_bench.report.jobs import (
    NO_JOB_FOLDER,
    Job,
    check_sweep_dir,
    no_job_folders,
    overrides_dict,
    scan_found,
)

log = logging.getLogger("compress_bench")

MULTIRUN_YAML = "multirun.yaml"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass
class Declared:
    """The jobs of a sweep as it declared them: ``jobs[n]`` is job n's override list.
    ``jobs`` is None when unknown (``reason`` says why); ``ordered`` is False when a shuffled
    sweep makes the number -> overrides pairing unknown (the count is still right)."""

    jobs: list[list[str]] | None
    ordered: bool = True
    reason: str | None = None

    @property
    def count(self) -> int | None:
        return None if self.jobs is None else len(self.jobs)


def read_declared(sweep_dir: Path | str) -> Declared:
    """The jobs ``<sweep_dir>/multirun.yaml`` declares (:class:`Declared`; never raises)."""
    path = Path(sweep_dir) / MULTIRUN_YAML
    if not path.is_file():
        return Declared(None, reason=f"no {MULTIRUN_YAML}")
    try:
        config = OmegaConf.load(path)
    except Exception as err:  # yaml and OmegaConf errors alike: the file is unusable
        return Declared(None, reason=f"{MULTIRUN_YAML} unreadable: {_one_line(err)}")
    if not isinstance(config, DictConfig):
        return Declared(None, reason=f"{MULTIRUN_YAML} is not a mapping")
    return declared_from_config(config)


def declared_from_config(config: DictConfig) -> Declared:
    """The jobs Hydra's basic sweeper makes of a multirun config (:func:`read_declared`)."""
    sweeper = OmegaConf.select(config, "hydra.sweeper._target_", default=None)
    if sweeper is None:
        return Declared(None, reason=f"{MULTIRUN_YAML} names no hydra.sweeper")
    if sweeper != BASIC_SWEEPER:
        return Declared(None, reason=f"sweeper {sweeper}: its jobs cannot be derived")
    task = _strings(OmegaConf.select(config, "hydra.overrides.task", default=None))
    if task is None:
        return Declared(None, reason=f"{MULTIRUN_YAML} has no hydra.overrides.task list")
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + task
    try:
        return _expand(arguments, config)
    except Exception as err:  # an override Hydra's basic sweeper would reject
        return Declared(None, reason=f"cannot expand the sweep's overrides: {_one_line(err)}")


def _strings(node: Any) -> list[str] | None:
    """A ListConfig of override strings as a plain list, interpolations left as typed."""
    if not isinstance(node, ListConfig):
        return None
    return [str(item) for item in OmegaConf.to_container(node, resolve=False)]


def _expand(arguments: list[str], config: DictConfig) -> Declared:
    """What :meth:`BasicSweeper.sweep` does with its arguments, minus launching the jobs."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    overrides = OverridesParser.create().parse_overrides(arguments)
    if any(o.value_type == ValueType.GLOB_CHOICE_SWEEP for o in overrides):
        loader = _config_loader(config)  # glob() lists a config group's options
        for override in overrides:
            override.config_loader = loader
    ordered = not any(getattr(o._value, "shuffle", False) for o in overrides)
    (jobs,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return Declared([list(job) for job in jobs], ordered=ordered)


def _config_loader(config: DictConfig) -> Any:
    """A Hydra config loader over the config sources the sweep used
    (``hydra.runtime.config_sources``), for expanding ``glob()`` over a group's options."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
    from hydra.core.plugins import Plugins

    Plugins.instance()  # registers the config source plugins (pkg://, file://) as Hydra does
    search_path = ConfigSearchPathImpl()
    for source in OmegaConf.select(config, "hydra.runtime.config_sources", default=None) or []:
        search_path.append(provider=source.provider, path=f"{source.schema}://{source.path}")
    return ConfigLoaderImpl(config_search_path=search_path)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def placeholder(sweep_dir: Path, num: int, declared: Declared) -> Job:
    """A declared job that has no folder: missing, with the overrides the sweep gave it."""
    raw = declared.jobs[num] if declared.ordered else None
    note = "" if declared.ordered else " (a shuffled sweep: its overrides are not known)"
    return Job(
        num=num,
        path=sweep_dir / str(num),
        overrides=overrides_dict(raw or []),
        summary_error=NO_JOB_FOLDER + note,
        found=False,
        declared=raw,
    )


def reconcile(sweep_dir: Path, found: list[Job], declared: Declared) -> list[Job]:
    """The jobs found, each with its declared overrides attached (and ``unexpected`` set when
    it does not belong to the declared sweep), plus a missing placeholder for every declared
    job without a folder, in job order. Unknown declared jobs: the jobs found, unchanged."""
    if declared.jobs is None:
        return found
    by_num = {job.num: job for job in found}
    jobs = [
        _attach(by_num.pop(num, None) or placeholder(sweep_dir, num, declared), declared)
        for num in range(len(declared.jobs))
    ]
    for job in by_num.values():  # numbered beyond the declared jobs
        job.unexpected = (
            f"not a job of this sweep: {MULTIRUN_YAML} declares jobs 0-{len(declared.jobs) - 1}"
            " (a folder of another sweep?)"
        )
    return sorted(jobs + list(by_num.values()), key=lambda job: job.num)


def _attach(job: Job, declared: Declared) -> Job:
    """Give a job the overrides the sweep declared for its number, and flag a folder whose own
    overrides differ from them (a folder left by another sweep)."""
    if not declared.ordered:
        return job
    job.declared = declared.jobs[job.num]
    if not job.overrides:  # .hydra/ not written or unreadable: the sweep says them
        job.overrides = overrides_dict(job.declared)
    if job.raw_overrides is not None and job.raw_overrides != job.declared:
        job.unexpected = (
            f"its overrides ({' '.join(job.raw_overrides)}) are not the ones {MULTIRUN_YAML} "
            f"declares for job {job.num} ({' '.join(job.declared)}): a folder of another sweep?"
        )
    return job


def read_sweep(sweep_dir: Path | str) -> tuple[list[Job], Declared]:
    """Every job of a sweep, found or only declared (:func:`reconcile`), and what it declared.
    ReportError if the folder is not a sweep (no job folder and no declared job)."""
    sweep_dir = Path(sweep_dir)
    check_sweep_dir(sweep_dir)
    found = scan_found(sweep_dir)
    declared = read_declared(sweep_dir)
    if not found and not declared.jobs:
        raise no_job_folders(sweep_dir)
    if declared.jobs is None:
        log.warning(
            "sweep report: %s: %s, so the jobs the sweep declared are unknown; reporting the "
            "%d job folders found",
            sweep_dir,
            declared.reason,
            len(found),
        )
    return reconcile(sweep_dir, found, declared), declared
