"""Shared fixtures: the offline datasets, an isolated cache, and a CLI runner."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    """Where the tests look for the offline datasets: ``$COMPRESS_BENCH_DATA`` when it is set
    (and not empty), else ``../shared/datasets`` beside the repository. Every test finds its
    data through this function (or :func:`dataset_path`), never through a path of its own."""
    configured = os.environ.get("COMPRESS_BENCH_DATA")
    if configured:
        return Path(configured).expanduser().absolute()
    return REPO.parent / "shared" / "datasets"


def dataset_path(*parts: str) -> Path:
    """``DATASETS / parts`` (the folder as the session started, whatever a test's monkeypatch
    does to the variable later); the calling test is skipped, with the place it looked, when
    that file or folder is absent."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"offline dataset not found at {path} (set COMPRESS_BENCH_DATA to the folder that "
            "holds mushrooms/, cifar10/, mnist/)"
        )
    return path


#: the datasets folder as the session started (see datasets_dir)
DATASETS = datasets_dir()
SHARED_DATASETS = DATASETS  # the name other test modules import


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Derived caches (reference solutions) go to a per-session temporary folder."""
    monkeypatch.setenv("COMPRESS_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _restore_logging():
    """A CLI run in this process (``main()``) lets Hydra configure logging with handlers on
    the test's captured stderr; remove them afterwards, or a later test logs into a closed
    file."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    saved = {lg: (lg.handlers[:], lg.level, lg.propagate) for lg in loggers}
    yield
    for lg in [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]:
        handlers, level, propagate = saved.get(lg, ([], logging.NOTSET, True))
        for handler in lg.handlers[:]:
            if handler not in handlers:
                lg.removeHandler(handler)
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.fixture(scope="session")
def mushrooms_dir(tmp_path_factory) -> Path:
    """A private copy of the offline mushrooms folder."""
    source = dataset_path("mushrooms", "mushrooms")
    root = tmp_path_factory.mktemp("datasets")
    (root / "mushrooms").mkdir()
    shutil.copy(source, root / "mushrooms" / "mushrooms")
    return root


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    module: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run the command in a subprocess, as a user would (``python -m compress_bench``)."""
    command = (
        [sys.executable, "-m", "compress_bench"]
        if module
        else [str(Path(sys.executable).with_name("compress-bench"))]
    )
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=_cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """``python -m compress_bench`` started in the background (to be waited for, signalled
    or killed); its stderr is kept, its stdout dropped."""
    return subprocess.Popen(
        [sys.executable, "-m", "compress_bench", *args],
        cwd=cwd,
        env=_cli_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _cli_env(env: dict[str, str] | None) -> dict[str, str]:
    """The test process's environment, offline, without Hydra's full tracebacks."""
    full_env = {**os.environ, "COMPRESS_BENCH_OFFLINE": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return full_env


def files_under(root: Path) -> list[str]:
    """Every path below root, relative and sorted (to show that nothing else was written)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def one_line(exc: pytest.ExceptionInfo) -> str:
    """The message of a raised error, asserted to be one line."""
    message = str(exc.value)
    assert "\n" not in message
    return message


def run_main(args, cwd: Path, monkeypatch, capfd) -> tuple[int, str, str]:
    """``main()`` in this process, in ``cwd``, as the console script calls it (offline):
    (exit code, stdout, stderr)."""
    from compress_bench.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setenv("COMPRESS_BENCH_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["compress-bench", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capfd.readouterr()
    return code, out, err
