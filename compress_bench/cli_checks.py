"""Checks of the command line made before Hydra starts, where its own errors would be
obscure (``=0.2``, ``compressor=null``, an unquoted non-ASCII path) or would come after it has
written into a folder (a run folder that already holds a run, a folder that cannot be written,
and every bad value: Hydra creates the run folder before the job validates its config).

A single run (and ``--cfg``) composes its config here, with Hydra's compose API, and validates
it as the job would (:func:`compress_bench.config.validate`), plus the settings its options
ignore (:func:`compress_bench.config.unused_settings`). A sweep (``-m``) is checked for what
would fail every job the same way (an unknown key, ``resume``); its values are each job's own
(a failing job is reported and the sweep goes on)."""

from __future__ import annotations

import copy
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from compress_bench.config import (
    config_groups,
    group_keys,
    top_level_keys,
    unknown_key,
    unused_settings,
    validate,
)
from compress_bench.errors import ConfigError, UserError

# Hydra flags after which the arguments are not overrides of this program's config
_NOT_OVERRIDES = ("-sc", "--shell-completion", "--hydra-help", "--help", "-h")
_MULTIRUN = ("-m", "--multirun")
RUN_DIR, SWEEP_DIR = "hydra.run.dir", "hydra.sweep.dir"
DEFAULT_OUTPUTS = "outputs"  # where conf/config.yaml puts run and sweep folders


@dataclass
class Checked:
    """What the checks of a single run leave to the command: the deepest folder that exists
    above its run folder now (a run refused after Hydra made its folder removes what it made
    below that one; None: not known), and warnings to log once the run is built (not at
    once: a refusal found later must still be the command's only line)."""

    run_floor: Path | None = None
    warnings: list[str] = field(default_factory=list)


def check_arguments(argv: Sequence[str]) -> Checked:
    """Raise UserError (one line) for an override Hydra would reject obscurely or too late,
    and a ConfigError (or Hydra's or OmegaConf's own error) for a single run's config that
    the job would refuse."""
    flags = _check_flags(argv)
    if any(arg in _NOT_OVERRIDES for arg in argv):
        return Checked()
    overrides = [_parse(arg) for arg in argv if "=" in arg and not arg.startswith("-")]
    overrides = [o for o in overrides if o is not None]
    groups = config_groups()
    for override in overrides:
        _check_group_choice(override, groups)
    multirun = any(arg in _MULTIRUN for arg in argv)
    _check_output_folder(overrides, SWEEP_DIR if multirun else RUN_DIR, multirun)
    multirun = multirun or "hydra.mode=MULTIRUN" in argv
    other = flags.config_path or flags.config_name or flags.config_dir
    if other or flags.info or flags.experimental_rerun:
        return Checked()  # another config than ours, Hydra's report on it, or a pickled one
    for override in overrides:
        _refuse_nested_importance(override)
    if multirun:  # a single run's keys are checked in its composed config, option by option
        for override in overrides:
            _check_key(override)
        _refuse_resume_in_sweep(overrides)
        return Checked()
    return _check_config(flags.overrides, overrides)


def _check_flags(argv: Sequence[str]):
    """Parse the flags with Hydra's own argument parser, raising its error as one line
    (argparse would print the whole usage text first); the parsed arguments."""
    from hydra._internal.utils import get_args_parser  # Hydra's parser (pinned hydra-core 1.3)

    parser = get_args_parser()

    def error(message: str) -> None:
        raise UserError(f"{message} (see --help)")

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(list(argv))


# Hydra's override grammar reads an unquoted value of ASCII letters, digits, spaces and
# /-+.$%*@?|:~\\_ (https://hydra.cc/docs/advanced/override_grammar/basic); a path with
# anything else (an accented letter, '=', a parenthesis, a quote) must be quoted
_NEEDS_QUOTES = set("=()'\"")


def _parse(text: str) -> Override | None:
    if text.startswith("="):
        raise UserError(f"malformed override {text!r}: nothing before '='; write key=value")
    try:
        return OverridesParser.create().parse_override(text)
    except Exception:
        _suggest_quotes(text)
        return None  # Hydra reports its own parse errors in one line


def _suggest_quotes(text: str) -> None:
    """One line saying how to quote a value Hydra cannot read unquoted (a path with an
    accented letter, an '=' or a parenthesis): Hydra's own lexer error only shows the
    character where it stopped."""
    key, _, value = text.partition("=")
    if not value or value[0] in "'\"[{":
        return  # quoted already, or a list or dict: Hydra's error is about something else
    if value.isascii() and not ("/" in value and _NEEDS_QUOTES & set(value)):
        return
    quoted = f'"{value}"' if '"' not in value else "'" + value.replace("'", "\\'") + "'"
    raise UserError(
        f"cannot read {text}: a value with non-ASCII letters, or a path with any of = ( ) ' "
        f'", must be quoted inside the argument: {shlex.quote(f"{key}={quoted}")} (the outer '
        "quotes are the shell's)"
    )


def _check_key(override: Override) -> None:
    """An override of a key that no option of the config has (a typo): one line naming the
    closest key, where Hydra would say "Could not override" and suggest ``+key=value`` (or,
    given ``+key=value``, store the typo and run with the default). A key that another option
    of the group has is left to the composed config (a single run) or to each job (a sweep)."""
    key = override.key_or_group
    if override.package is not None or "/" in key or override.is_delete():
        return
    group, _, rest = key.partition(".")
    groups = config_groups()
    if group == "hydra" or (group in groups and not rest):
        return  # Hydra's own keys; a group choice, checked by Hydra against the options
    if group not in top_level_keys():
        raise UserError(unknown_key(group if rest else key, top_level_keys()))
    options = group_keys(group)
    if rest and not options:
        what = f"an option: {group}=<option>" if group in groups else "a value"
        raise UserError(f"unknown key {key!r} ({group} takes {what}, not keys)")
    known = {k for keys in options.values() for k in keys} | {"name"}
    name = rest.partition(".")[0]
    if rest and name not in known:
        raise UserError(unknown_key(f"{group}.{name}", known))


def _refuse_nested_importance(override: Override) -> None:
    """``compressor.importance`` is ``${importance}`` (the md_* compressors read the group),
    which Hydra cannot override through: name the key that works."""
    key = override.key_or_group
    if key.startswith("compressor.importance.") and not override.is_delete():
        raise UserError(
            f"{override.input_line}: the md_* compressors read the importance group; write "
            f"importance.{key.split('.', 2)[2]}=... instead"
        )


def _refuse_resume_in_sweep(overrides: list[Override]) -> None:
    """resume=<run dir> continues that one run in its folder: every job of a sweep would
    continue it (or fail), so a sweep with resume is refused before any job runs."""
    for override in overrides:
        if override.key_or_group == "resume" and (
            override.is_sweep_override() or override.value() is not None
        ):
            raise UserError(
                f"{override.input_line}: resume continues one run in its own folder and "
                "cannot be part of a sweep (-m); resume each run with its own command"
            )


def _check_config(arguments: list[str], overrides: list[Override]) -> Checked:
    """Compose a single run's config as Hydra will and validate it as the job will (so a
    refused run writes nothing)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    from compress_bench.config import compose_config

    cfg = compose_config(*arguments, hydra_node=True)
    run_dir = _run_dir(cfg)
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    try:  # ${hydra:...} in the config resolves as in the job (run_job sets the same)
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.mode = RunMode.RUN
            cfg.hydra.runtime.output_dir = str(run_dir)
        hydra_config.set_config(cfg)
        job = copy.deepcopy(cfg)  # the job's config, as run_job makes it
        with read_write(job), open_dict(job):
            del job["hydra"]
        validate(job)
        _check_resume(job)
        warnings = _check_unused(job, overrides)
    finally:
        hydra_config.cfg = previous
    return Checked(_nearest_existing(_fixed_part(cfg, run_dir)), warnings)


def _check_resume(cfg: DictConfig) -> None:
    """resume=<folder> without a checkpoint there: the job's own first check, made before
    Hydra makes a folder and before the run's set-up logs anything (the job checks the rest
    of the checkpoint: its config, its format)."""
    if not cfg.get("resume"):
        return
    from compress_bench.run.state import CHECKPOINT

    folder = Path(str(cfg.resume)).expanduser().absolute()
    if not (folder / CHECKPOINT).is_file():
        raise ConfigError(f"resume={folder}: no {CHECKPOINT} there (set checkpoint_every)")


def _run_dir(cfg: DictConfig) -> Path:
    try:
        return Path(os.path.abspath(str(OmegaConf.select(cfg, RUN_DIR))))
    except Exception:  # a folder that does not resolve: Hydra says so in the run
        return Path.cwd()


def _fixed_part(cfg: DictConfig, run_dir: Path) -> Path:
    """The run folder, or, when it is interpolated (the default is outputs/${now:...}/...),
    the folder its literal beginning names: the time of day differs when Hydra resolves it."""
    template = str(cfg.hydra.run._get_node("dir")._value())
    if "${" not in template:
        return run_dir
    head = template[: template.index("${")]
    return Path(os.path.abspath(head if head.endswith("/") else os.path.dirname(head) or "."))


def _check_unused(cfg: DictConfig, overrides: list[Override]) -> list[str]:
    """Refuse a setting of the command line that the chosen options ignore
    (``optimizer.momentum`` with ``optimizer=gd``, ...); the warnings for the ones that
    cannot change a result (data_dir)."""
    keys = [
        o.key_or_group
        for o in overrides
        if not o.is_delete() and o.package is None and "/" not in o.key_or_group
    ]
    unused = unused_settings(cfg, [key for key in keys if not key.startswith("hydra.")])
    for item in unused:
        if item.refuse:
            raise ConfigError(item.reason)
    return [item.reason for item in unused]


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
