"""Checks of the command line made before Hydra starts, where its own errors would be
obscure (``=0.2``, ``compressor=null``) or would come after it has written into a folder
(a run folder that already holds a run, a folder that cannot be written)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override

from compress_bench.config import config_groups
from compress_bench.errors import UserError

# Hydra flags after which the arguments are not overrides of this program's config
_NOT_OVERRIDES = ("-sc", "--shell-completion", "--hydra-help", "--help", "-h")
_MULTIRUN = ("-m", "--multirun")
RUN_DIR, SWEEP_DIR = "hydra.run.dir", "hydra.sweep.dir"
DEFAULT_OUTPUTS = "outputs"  # where conf/config.yaml puts run and sweep folders


def check_arguments(argv: Sequence[str]) -> None:
    """Raise UserError (one line) for an override Hydra would reject obscurely or too late."""
    _check_flags(argv)
    if any(arg in _NOT_OVERRIDES for arg in argv):
        return
    overrides = [_parse(arg) for arg in argv if "=" in arg and not arg.startswith("-")]
    overrides = [o for o in overrides if o is not None]
    groups = config_groups()
    for override in overrides:
        _check_group_choice(override, groups)
    multirun = any(arg in _MULTIRUN for arg in argv)
    _check_output_folder(overrides, SWEEP_DIR if multirun else RUN_DIR, multirun)


def _check_flags(argv: Sequence[str]) -> None:
    """Parse the flags with Hydra's own argument parser, raising its error as one line
    (argparse would print the whole usage text first)."""
    from hydra._internal.utils import get_args_parser  # Hydra's parser (pinned hydra-core 1.3)

    parser = get_args_parser()

    def error(message: str) -> None:
        raise UserError(f"{message} (see --help)")

    parser.error = error  # type: ignore[method-assign]
    parser.parse_args(list(argv))


def _parse(text: str) -> Override | None:
    if text.startswith("="):
        raise UserError(f"malformed override {text!r}: nothing before '='; write key=value")
    try:
        return OverridesParser.create().parse_override(text)
    except Exception:
        return None  # Hydra reports its own parse errors in one line


def _check_group_choice(override: Override, groups: dict[str, list[str]]) -> None:
    group = override.key_or_group
    if override.package or group not in groups or override.is_delete():
        return
    if override.is_sweep_override():
        return  # a,b,c: each choice is checked by Hydra when its job is composed
    value = override.value()
    if not isinstance(value, str | list) or value == "":
        raise UserError(
            f"{override.input_line}: {group} is a config group and needs one of its options "
            f"({', '.join(groups[group])})"
        )


def _literal(overrides: list[Override], key: str) -> str | None:
    """The value of ``key=value`` when it is a plain path (no interpolation)."""
    for override in overrides:
        if override.key_or_group == key and not override.is_sweep_override():
            value = override.value()
            if isinstance(value, str) and "${" not in value:
                return value
    return None


def _check_output_folder(overrides: list[Override], key: str, multirun: bool) -> None:
    value = _literal(overrides, key)
    folder = Path(value if value is not None else DEFAULT_OUTPUTS).expanduser().absolute()
    named = f"{key}={value}" if value is not None else f"the default output folder {folder}"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{named} is a file, not a folder; choose another {key}")
    if value is not None and folder.is_dir():
        _refuse_used(folder, key, multirun)
    ancestor = _nearest_existing(folder)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write {named}: permission denied on {ancestor}; choose a writable {key}"
        )


def _refuse_used(folder: Path, key: str, multirun: bool) -> None:
    if multirun:  # the same rule as the sweep callback's (for interpolated folders)
        from compress_bench.report.reuse import refuse_used_sweep_folder

        refuse_used_sweep_folder(folder)
        return
    refuse_used_run_folder(folder)


def refuse_used_run_folder(folder: Path) -> None:
    """UserError when ``folder`` already holds a run's results (they would mix with ours)."""
    used = [name for name in ("summary.json", "metrics.csv") if (folder / name).exists()]
    if used:
        raise UserError(
            f"{folder} already holds a run ({', '.join(used)}); choose another "
            "hydra.run.dir or delete it"
        )


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
