"""Structured configs: the schema every composed config is validated against, once.

Each config group option (``conf/<group>/<option>.yaml``) extends the dataclass stored here
under ``schema/<group>/<option>``, so a typo in a key, a string where a number belongs, or a
value outside an enumeration is rejected by OmegaConf when the config is composed, before
anything runs. Range checks that types cannot express live in :func:`validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from compress_bench.errors import ConfigError

# Enum member names are what users type (OmegaConf validates strings against the names).

SEED_MAX = 2**63 - 1  # NumPy's SeedSequence takes any non-negative int; torch seeds are 64-bit


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    allow_inf: bool = False,
) -> Any:
    """A schema field with its range: ``ge`` / ``gt`` / ``le`` bounds, checked by
    :func:`validate` together with the field's type. Every float field must be finite unless
    ``allow_inf`` (NaN never is); None passes when the field's type admits it. The bounds live
    here, next to the type, so the validator and the property-based CLI test both read them
    from the one schema instead of keeping their own lists."""
    bounds = {"ge": ge, "gt": gt, "le": le, "allow_inf": allow_inf}
    return field(default=default, metadata={"bounds": bounds})


class Split(Enum):
    iid = "iid"
    label_sorted = "label_sorted"
    contiguous = "contiguous"
    file_order = "file_order"


class Init(Enum):
    zeros = "zeros"
    random = "random"
    thesis = "thesis"


class Storage(Enum):
    auto = "auto"
    dense = "dense"
    sparse = "sparse"


class BitsConvention(Enum):
    spec = "spec"
    thesis = "thesis"


class Weights(Enum):
    code = "code"
    integer_k = "integer_k"
    slides = "slides"


class ImportanceVariant(Enum):
    spec = "spec"
    thesis_code = "thesis_code"
    thesis_resnet = "thesis_resnet"


class ImportanceInit(Enum):
    uniform = "uniform"
    abs_grad = "abs_grad"
    random = "random"


class ImportanceScope(Enum):
    tensor = "tensor"
    joint = "joint"


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Kernels(Enum):
    auto = "auto"
    portable = "portable"


class Backend(Enum):
    simulated = "simulated"
    torch_distributed = "torch_distributed"


class DistReduce(Enum):
    gather = "gather"
    all_reduce = "all_reduce"


class DType(Enum):
    float64 = "float64"
    float32 = "float32"


class TolMetric(Enum):
    """The metrics ``tol`` can stop on (compress_bench/run/metrics.py: convex or training ones)."""

    grad_norm_rel = "grad_norm_rel"
    grad_norm = "grad_norm"
    loss_gap = "loss_gap"
    loss = "loss"
    train_loss = "train_loss"
    test_loss = "test_loss"
    test_accuracy = "test_accuracy"


class Aggregation(Enum):
    mean = "mean"
    majority_vote = "majority_vote"


class TopKScale(Enum):
    none = "none"
    dk = "dk"


class EF21Init(Enum):
    gradient = "gradient"
    compressed = "compressed"


class DIANAInit(Enum):
    zeros = "zeros"
    gradient = "gradient"


class Rounding(Enum):
    nearest = "nearest"
    log2 = "log2"


# global: one operator over the whole vector (spec 0.3); layer: one operator per parameter
# tensor, k_l = ceil(ratio numel_l) (spec 0.8). Built by the functional API because "global"
# is a Python keyword and OmegaConf matches enum members by name.
Granularity = Enum("Granularity", [("global", "global"), ("layer", "layer")])


class Sampling(Enum):
    uniform = "uniform"
    bernoulli = "bernoulli"


# --- problems ------------------------------------------------------------------------------


@dataclass
class LogRegConfig:
    """l2-regularised logistic regression (spec section 25)."""

    name: str = MISSING
    l2: float = bounded(0.1, ge=0)
    split: Split = Split.iid
    split_seed: int | None = bounded(None, ge=0, le=SEED_MAX)  # None: the run's seed
    init: Init = Init.zeros
    storage: Storage = Storage.auto  # auto: sparse (CSR) below 30% non-zeros, else dense
    # block sizes splitting x into named tensors block0, block1, ... (granularity=layer
    # compresses each on its own); None: one tensor
    layout: list[int] | None = None
    # x viewed as one (m, c) matrix, row-major, m c = d, for the low-rank operators (spec 18's
    # CHOICE, e.g. [8, 14] for mushrooms' 112 coordinates); None: a vector
    matrix_shape: list[int] | None = None
    # rows per worker and round (distributed compressed SGD); None: the full shard
    batch_size: int | None = bounded(None, ge=1)


@dataclass
class MushroomsConfig(LogRegConfig):
    name: str = "mushrooms"


@dataclass
class SyntheticLogRegConfig(LogRegConfig):
    """A generated problem: Gaussian features, labels from a random linear model plus noise."""

    name: str = "synthetic_logreg"
    n_samples: int = bounded(600, ge=1)
    dim: int = bounded(20, ge=1)
    data_seed: int = bounded(0, ge=0, le=SEED_MAX)
    label_noise: float = bounded(0.5, ge=0)  # std of the Gaussian noise on the scores


class ShardSplit(Enum):
    iid = "iid"
    label_sorted = "label_sorted"


@dataclass
class MnistConfig:
    """A small CNN on MNIST (problems/neural.py): per-worker minibatches each round."""

    name: str = "mnist"
    model: str = "mnist_cnn"
    split: ShardSplit = ShardSplit.iid
    batch_size: int = bounded(64, ge=1)  # per worker and round
    test_limit: int | None = bounded(None, ge=1)  # evaluate on the first images only
    train_limit: int | None = bounded(None, ge=1)  # train on the first images only


@dataclass
class Cifar10Config:
    """The CIFAR-style ResNet18 on CIFAR-10, binary version (problems/neural.py)."""

    name: str = "cifar10_resnet18"
    split: ShardSplit = ShardSplit.iid
    batch_size: int = bounded(128, ge=1)  # per worker and round
    train_batches: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    test_file: str | None = None  # None: the official test_batch.bin
    augment: bool = True  # random crop (4-pixel padding) and horizontal flip
    test_limit: int | None = bounded(None, ge=1)
    train_limit: int | None = bounded(None, ge=1)


# --- server optimizers -----------------------------------------------------------------------


class Schedule(Enum):
    constant = "constant"
    cosine = "cosine"
    step = "step"


@dataclass
class OptimizerConfig:
    """How the server applies the method's direction (compress_bench/optim.py)."""

    name: str = "gd"
    momentum: float = bounded(0.0, ge=0, le=0.999)
    weight_decay: float = bounded(0.0, ge=0)
    schedule: Schedule = Schedule.constant
    step_every: int = bounded(1, ge=1)  # schedule=step: multiply lr by gamma this often
    gamma: float = bounded(0.1, gt=0, le=1)


# --- compressors and quantizers ------------------------------------------------------------


@dataclass
class IdentityConfig:
    name: str = "identity"


@dataclass
class RandKConfig:
    name: str = "rand_k"
    scale: TopKScale = TopKScale.dk
    shared_seed: bool = False


@dataclass
class TopKConfig:
    name: str = "top_k"
    scale: TopKScale = TopKScale.none


@dataclass
class BiasedRandKConfig:
    name: str = "biased_rand_k"
    sampling: Sampling = Sampling.uniform
    shared_seed: bool = False


@dataclass
class AdaptiveRandKConfig:
    name: str = "adaptive_rand_k"


class ESGDThreshold(Enum):
    mean_abs_grad = "mean_abs_grad"
    mean_abs_residual = "mean_abs_residual"


class ESGDCredit(Enum):
    additive = "additive"
    multiplicative = "multiplicative"


@dataclass
class ESGDConfig:
    """eSGD (spec 19, a reconstruction); every CHOICE a key with spec 19's default."""

    name: str = "esgd"
    beta: float = bounded(0.9, ge=0, le=1)
    threshold: ESGDThreshold = ESGDThreshold.mean_abs_grad
    credit: ESGDCredit = ESGDCredit.additive
    momentum_damping: bool = False


@dataclass
class RSVDConfig:
    """Rank-r randomized SVD of each matrix-shaped tensor (spec 17)."""

    name: str = "rsvd"
    rank: int = bounded(2, ge=1)
    oversampling: int = bounded(5, ge=0)
    power_iterations: int = bounded(1, ge=0)


class PowerSGDForm(Enum):
    collective = "collective"
    per_worker = "per_worker"


class Orthogonalization(Enum):
    gram_schmidt = "gram_schmidt"
    qr = "qr"


@dataclass
class PowerSGDConfig:
    """PowerSGD (spec 18); every CHOICE a key with the paper code's default."""

    name: str = "power_sgd"
    rank: int = bounded(2, ge=1)
    form: PowerSGDForm = PowerSGDForm.collective
    orthogonalization: Orthogonalization = Orthogonalization.gram_schmidt
    warm_start: bool = True
    min_compression_rate: float = bounded(0.0, ge=0)
    start_round: int = bounded(0, ge=0)


@dataclass
class ImportanceConfig:
    """The importance solver of the md_* compressors (spec section 12)."""

    variant: ImportanceVariant = ImportanceVariant.spec
    # steps = 0 would leave w at its start (uniform: the md operators then send coordinates
    # 0..k-1 every round), so at least one mirror-descent step is required
    steps: int = bounded(100, ge=1)
    lr: float = bounded(1.0, gt=0)
    rho: float = bounded(1.0, gt=0)
    entropy: float = bounded(0.0, ge=0)
    warm_start: bool = True
    init: ImportanceInit = ImportanceInit.uniform
    every: int = bounded(1, ge=1)  # run the solver on rounds 0, every, 2 every, ...
    scope: ImportanceScope = ImportanceScope.tensor  # granularity=layer: per tensor or joint


@dataclass
class MDUnweightedConfig:
    name: str = MISSING
    scale: TopKScale = TopKScale.none
    importance: Any = "${importance}"


@dataclass
class MDWeightedConfig:
    name: str = MISSING
    weights: Weights = Weights.code
    importance: Any = "${importance}"


@dataclass
class NoQuantizerConfig:
    name: str = "none"


@dataclass
class PowerOfTwoConfig:
    name: str = "power_of_two"
    rounding: Rounding = Rounding.nearest
    clip_exponent_at_zero: bool = False


@dataclass
class NaturalConfig:
    name: str = "natural"


@dataclass
class StandardDitheringConfig:
    name: str = "standard_dithering"
    levels: int = bounded(8, ge=1)
    norm: float = bounded(2.0, ge=1, allow_inf=True)  # p in [1, inf]


@dataclass
class QSGDConfig:
    name: str = "qsgd"
    levels: int = bounded(8, ge=1)


@dataclass
class NaturalDitheringConfig:
    name: str = "natural_dithering"
    levels: int = bounded(8, ge=1)
    norm: float = bounded(2.0, ge=1, allow_inf=True)


@dataclass
class SignConfig:
    name: str = "sign"


@dataclass
class ScaledSignConfig:
    name: str = "scaled_sign"


# --- methods -------------------------------------------------------------------------------


@dataclass
class DCGDConfig:
    name: str = "dcgd"
    # mean: (1/n) sum_i of the decoded messages; majority_vote: sgn(sum_i sign(g_i)) (spec 11,
    # signSGD with majority vote; needs quantizer=sign)
    aggregation: Aggregation = Aggregation.mean


@dataclass
class EFConfig(DCGDConfig):
    """EF14 (spec 22): DCGD with an error memory around the whole operator."""

    name: str = "ef"


@dataclass
class EF21Config:
    """EF21 (spec 23); init=gradient sends grad f_i(x^0) uncompressed in round 0."""

    name: str = "ef21"
    init: EF21Init = EF21Init.gradient


@dataclass
class DIANAConfig:
    """DIANA (spec 24); alpha null: 1/(omega + 1) of the operator."""

    name: str = "diana"
    alpha: float | None = bounded(None, gt=0, le=1)
    init: DIANAInit = DIANAInit.zeros


# --- simulated network (spec 28) -------------------------------------------------------------


class Topology(Enum):
    """How the uplink is organised (spec 28; compress_bench/comm/network.py)."""

    ps = "ps"
    ps_shared = "ps_shared"
    ring = "ring"
    allgather = "allgather"


NO_NETWORK = "none"  # network=none, the default: no simulated time, no columns


@dataclass
class NetworkConfig:
    """The alpha-beta network model of spec 28: comm_time and sim_time columns per row.
    ``network=none`` (the default) has the keys too, so that a sweep over presets can
    override them (``-m network=ethernet_1g,infiniband_100g network.topology=ring``: Hydra
    applies ``network.topology`` to the default before the jobs choose their preset)."""

    name: str = NO_NETWORK
    latency: float | None = bounded(None, ge=0)  # alpha, seconds per message
    bandwidth: float | None = bounded(None, gt=0)  # B, bits per second
    topology: Topology = Topology.ps
    # seconds of compute per round; None: the measured wall time
    compute_time: float | None = bounded(None, ge=0)


def network_node(cfg: Any) -> Any:
    """The config's network node, None for no network (no node, or ``network=none``)."""
    node = cfg.get("network")
    if node is None or node.get("name") == NO_NETWORK:
        return None
    return node


# --- the run -------------------------------------------------------------------------------


@dataclass
class Config:
    problem: Any = MISSING
    compressor: Any = MISSING
    importance: Any = MISSING
    quantizer: Any = MISSING
    method: Any = MISSING
    optimizer: Any = None
    network: Any = None  # a network preset (spec 28); none: no simulated time
    ratio: float = bounded(0.2, gt=0, le=1)
    granularity: Granularity = Granularity["global"]
    n_workers: int = bounded(1, ge=1)
    rounds: int = bounded(2000, ge=0)
    lr: Any = "auto"  # a positive float, or "auto" (checked in validate)
    lr_mult: float = bounded(1.0, gt=0)  # multiplies lr (and the theory step of lr=auto)
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    tol: float | None = bounded(None, ge=0)
    tol_metric: TolMetric = TolMetric.grad_norm_rel  # test_accuracy: stop at >= tol
    max_bits: float | None = bounded(None, gt=0)
    # diverged once grad norm (networks: train loss) passes this x its value at x^0; None:
    # only a non-finite value diverges (the rule and its default: run/metrics.py)
    diverge_factor: float | None = bounded(1e6, gt=1)
    log_every: int = bounded(10, ge=1)
    device: Device = Device.auto
    dtype: DType = DType.float64
    bits_convention: BitsConvention = BitsConvention.spec
    data_dir: str | None = None
    # torch's intra-op threads; None: 1 (runner.resolve_threads says why)
    threads: int | None = bounded(None, ge=1)
    # auto: the CPU's fast paths on the CPU; portable: the accelerator's code on every device
    # (same numbers; compressors/paths.py)
    kernels: Kernels = Kernels.auto
    # simulated: the n workers are rows of one batch; torch_distributed: one process per
    # worker (spawned on 127.0.0.1, or the ranks of an external torchrun), compress_bench/dist.py
    backend: Backend = Backend.simulated
    dist_timeout: float = bounded(120.0, gt=0)  # seconds a rank waits for the others
    # how ranks average dense messages and PowerSGD's factors: gather the rows and reduce them
    # as the simulator does (bit for bit), or all_reduce (less traffic, the backend's order)
    dist_reduce: DistReduce = DistReduce.gather
    progress: bool | None = None  # None: a progress bar only when stderr is a terminal
    # neural problems: test metrics every this many rounds (None: log_every)
    eval_every: int | None = bounded(None, ge=1)
    checkpoint_every: int | None = bounded(None, ge=1)  # rounds between checkpoints
    resume: str | None = None  # a run folder whose checkpoint.pt to continue


SCHEMAS: dict[str, dict[str, type]] = {
    "problem": {
        "mushrooms": MushroomsConfig,
        "synthetic_logreg": SyntheticLogRegConfig,
        "mnist": MnistConfig,
        "cifar10_resnet18": Cifar10Config,
    },
    "optimizer": {"gd": OptimizerConfig, "sgd": OptimizerConfig},
    "compressor": {
        "identity": IdentityConfig,
        "rand_k": RandKConfig,
        "top_k": TopKConfig,
        "biased_rand_k": BiasedRandKConfig,
        "adaptive_rand_k": AdaptiveRandKConfig,
        "rsvd": RSVDConfig,
        "esgd": ESGDConfig,
        "power_sgd": PowerSGDConfig,
        "md_stochastic": MDUnweightedConfig,
        "md_greedy": MDUnweightedConfig,
        "md_greedy_weighted": MDWeightedConfig,
        "md_weighted_greedy": MDWeightedConfig,
    },
    "importance": {
        "spec": ImportanceConfig,
        "thesis_code": ImportanceConfig,
        "thesis_resnet": ImportanceConfig,
    },
    "quantizer": {
        "none": NoQuantizerConfig,
        "power_of_two": PowerOfTwoConfig,
        "natural": NaturalConfig,
        "standard_dithering": StandardDitheringConfig,
        "qsgd": QSGDConfig,
        "natural_dithering": NaturalDitheringConfig,
        "sign": SignConfig,
        "scaled_sign": ScaledSignConfig,
    },
    "method": {"dcgd": DCGDConfig, "ef": EFConfig, "ef21": EF21Config, "diana": DIANAConfig},
    # presets of one schema (conf/network/), each with its own name
    "network": dict.fromkeys(
        (NO_NETWORK, "ethernet_1g", "ethernet_10g", "infiniband_100g"), NetworkConfig
    ),
}


def compose_config(*overrides: str, hydra_node: bool = False) -> DictConfig:
    """The composed run config for ``overrides``, as the CLI would build it (for tests,
    benchmarks and notebooks; no run directory, no logging set-up)."""
    from hydra import compose, initialize_config_module

    register_configs()
    with initialize_config_module(config_module="compress_bench.conf", version_base="1.3"):
        return compose(
            config_name="config", overrides=list(overrides), return_hydra_config=hydra_node
        )


# Config folders that are plumbing, not choices: Hydra's own settings, and the per-operator
# settings an experiment selects by itself (experiment_operator/<experiment>_<compressor>).
INTERNAL_GROUPS = ("hydra", "experiment_operator")


def config_groups() -> dict[str, list[str]]:
    """The user-facing config groups and their options, read from the shipped conf/ folder
    (the ``schema/*`` nodes of the ConfigStore and the internal folders are left out)."""
    from importlib.resources import files

    root = files("compress_bench.conf")
    groups = {}
    for entry in root.iterdir():
        if entry.is_dir() and entry.name not in INTERNAL_GROUPS and not entry.name.startswith("_"):
            options = sorted(f.name[:-5] for f in entry.iterdir() if f.name.endswith(".yaml"))
            if options:
                groups[entry.name] = options
    return dict(sorted(groups.items()))


def _groups_help() -> str:
    return "\n".join(f"{group}: {', '.join(options)}" for group, options in config_groups().items())


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore and the resolvers the configs use
    (idempotent)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("cb_config_groups", _groups_help, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, options in SCHEMAS.items():
        for option, node in options.items():
            cs.store(group=f"schema/{group}", name=option, node=node)


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return float(value)


def _range_text(bounds: dict[str, Any], kind: str) -> str:
    """'in (0, 1]' for a two-sided range, 'an integer >= 1' for a one-sided one."""
    low = bounds["gt"] if bounds["gt"] is not None else bounds["ge"]
    if low is not None and bounds["le"] is not None:
        return f"in {'(' if bounds['gt'] is not None else '['}{low!r}, {bounds['le']!r}]"
    if low is not None:
        return f"{kind} {'>' if bounds['gt'] is not None else '>='} {low!r}"
    return f"{kind} <= {bounds['le']!r}"


def check_field(value: Any, annotation: Any, bounds: dict[str, Any] | None, key: str) -> None:
    """Check one value against its schema field: finite floats (unless the field allows inf),
    and the field's bounds. OmegaConf has already checked the type."""
    if value is None or isinstance(value, bool | str) or not isinstance(value, int | float):
        return  # None where allowed, enums and strings: OmegaConf validated them
    allow_inf = bool(bounds and bounds["allow_inf"])
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if not bounds:
        return
    low_ok = (bounds["ge"] is None or value >= bounds["ge"]) and (
        bounds["gt"] is None or value > bounds["gt"]
    )
    if not low_ok or (bounds["le"] is not None and value > bounds["le"]):
        kind = "an integer" if annotation is int or "int" in str(annotation) else "a number"
        raise ConfigError(f"{key} must be {_range_text(bounds, kind)}, got {value}")


def schema_fields(schema: type) -> list[tuple[str, Any, dict[str, Any] | None]]:
    """(name, type, bounds) of every field of a schema dataclass, for the validator and the
    property-based tests."""
    hints = typing.get_type_hints(schema)
    return [(f.name, hints[f.name], f.metadata.get("bounds")) for f in dataclasses.fields(schema)]


def group_schema(group: str, node: Any) -> type | None:
    """The schema dataclass a composed group node was built from (None: not a group)."""
    if group == "importance":
        return ImportanceConfig  # its options are presets of one schema, without a name key
    if group not in SCHEMAS or not isinstance(node, DictConfig) or node.get("name") is None:
        return None
    return SCHEMAS[group].get(str(node.name))


def _check_node(node: Any, schema: type, prefix: str) -> None:
    for name, annotation, bounds in schema_fields(schema):
        if annotation is Any:
            continue  # a nested group (importance) or a union OmegaConf cannot type (lr)
        check_field(node.get(name), annotation, bounds, prefix + name)


def validate(cfg: DictConfig) -> None:
    """Range checks the schema's types cannot express; raise ConfigError with one line.

    Every group node is checked against the dataclass it was composed from (its keys, bounds
    and finiteness), and the top level against :class:`Config`."""
    check_keys(cfg)
    _check_node(cfg, Config, "")
    network = network_node(cfg)
    if network is not None:
        missing = [key for key in ("latency", "bandwidth") if network.get(key) is None]
        if group_schema("network", network) is None or missing:
            presets = ", ".join(name for name in SCHEMAS["network"] if name != NO_NETWORK)
            raise ConfigError(
                f"a network needs a latency and a bandwidth: choose one of {presets} "
                "(network=ethernet_1g), then override its keys if need be"
            )
    for group, node in cfg.items():
        schema = group_schema(str(group), node)
        if schema is not None:
            _check_node(node, schema, f"{group}.")
    if cfg.lr != "auto":
        lr = _number(cfg.lr, "lr (a positive number or 'auto')")
        if not lr > 0 or not math.isfinite(lr):
            raise ConfigError(f"lr must be positive and finite (or 'auto'), got {cfg.lr}")


# --- keys: typos, and settings the chosen options ignore -----------------------------------


def top_level_keys() -> list[str]:
    """The keys and groups a command line may set at the top level (``hydra`` aside)."""
    return sorted({f.name for f in dataclasses.fields(Config)} | set(config_groups()))


def group_keys(group: str) -> dict[str, list[str]]:
    """Each option of a schema group and its keys (``name`` aside, which the option sets)."""
    if group == "importance":
        options = dict.fromkeys(config_groups().get("importance", []), ImportanceConfig)
    else:
        options = SCHEMAS.get(group, {})
    return {
        option: [f.name for f in dataclasses.fields(schema) if f.name != "name"]
        for option, schema in options.items()
    }


def unknown_key(path: str, known: Iterable[str], option: str | None = None) -> str:
    """One line for a key the config does not have: the closest known key at that level
    (difflib), or the options of the group that do have it, or the keys there are.

    ``known`` are the keys at that level, ``option`` the group choice they belong to
    (``compressor=top_k``). Never suggests Hydra's ``+key=value``, which would only store the
    typo in the config."""
    prefix, _, name = path.rpartition(".")
    known = sorted(k for k in known if k != "name" and not str(k).startswith("_"))
    where = f" for {option}" if option else ""
    elsewhere = [
        f"{prefix}={other}"
        for other, keys in group_keys(prefix).items()
        if name in keys and f"{prefix}={other}" != option
    ]
    close = difflib.get_close_matches(name, known, n=1)
    if elsewhere:
        hint = f"{name} belongs to {', '.join(elsewhere)}"
    elif close:
        hint = f"did you mean {prefix + '.' if prefix else ''}{close[0]}?"
    elif prefix:
        hint = f"its keys: {', '.join(known)}" if known else "it has no keys"
    else:
        hint = "--help lists the keys"
    return f"unknown key {path!r}{where} ({hint})"


def _option(group: str, node: Any) -> str | None:
    name = node.get("name") if isinstance(node, DictConfig) else None
    return f"{group}={name}" if name is not None else None


def check_keys(cfg: DictConfig) -> None:
    """Refuse a key the schema does not declare. Hydra refuses ``rato=0.1`` by itself, but
    ``+rato=0.1`` (or ``++``) appends the key and the run would go on with the default ratio,
    the typo stored in its config as if it meant something."""
    top = top_level_keys()
    for key in cfg:
        if key != "hydra" and key not in top:
            raise ConfigError(unknown_key(str(key), top))
    for group in cfg:
        node = cfg._get_node(group)
        if not isinstance(node, DictConfig) or group == "hydra":
            continue
        schema = group_schema(str(group), node)
        if schema is None:
            continue
        fields = [f.name for f in dataclasses.fields(schema)]
        for key in node:
            if key not in fields:
                raise ConfigError(unknown_key(f"{group}.{key}", fields, _option(group, node)))


@dataclass(frozen=True)
class Unused:
    """A setting the chosen options ignore: refused (exit 2), or only warned about when it
    cannot change a result (``refuse`` False)."""

    key: str
    reason: str
    refuse: bool = True


# compressors that accept ratio and ignore it, and why
RATIO_FREE = {"identity": "it sends every coordinate", "adaptive_rand_k": "it sends one coordinate"}
UNSHUFFLED_SPLITS = ("contiguous", "file_order")


def _text(value: Any) -> str:
    return value.name if isinstance(value, Enum) else str(value)


def md_compressors() -> list[str]:
    """The compressors that run the importance solver (their schema has ``importance``)."""
    return [option for option, keys in group_keys("compressor").items() if "importance" in keys]


def unused_settings(cfg: DictConfig, keys: Iterable[str]) -> list[Unused]:
    """The settings among ``keys`` (those a single run's command line sets: ``ratio``,
    ``optimizer.momentum``, ``importance``, ...) that the options chosen in ``cfg`` never
    read, so the run would silently go on without them. A sweep is not checked: there a key
    may serve some of its jobs only (``-m optimizer=gd,sgd optimizer.momentum=0.9``)."""
    found = []
    for key in dict.fromkeys(keys):
        for rule in UNUSED_RULES:
            reason = rule(cfg, key)
            if reason is not None:
                found.append(Unused(key, reason, refuse=rule is not _data_dir_unused))
                break
    return found


def _importance_unused(cfg: DictConfig, key: str) -> str | None:
    if key.partition(".")[0] != "importance":
        return None
    compressor, md = _text(cfg.compressor.name), md_compressors()
    if compressor not in md:
        return (
            f"{key} has no effect with compressor={compressor}: the importance solver serves "
            f"the md_* compressors only ({', '.join(md)})"
        )
    if key == "importance.scope" and _text(cfg.granularity) == "global":
        return (
            "importance.scope has no effect with granularity=global (one tensor, one solve); "
            "it chooses per-tensor or joint solves for granularity=layer"
        )
    return None


def _ratio_unused(cfg: DictConfig, key: str) -> str | None:
    compressor = _text(cfg.compressor.name)
    if key == "ratio" and compressor in RATIO_FREE:
        return f"ratio has no effect with compressor={compressor} ({RATIO_FREE[compressor]})"
    return None


def _eval_every_unused(cfg: DictConfig, key: str) -> str | None:
    convex = issubclass(group_schema("problem", cfg.problem) or object, LogRegConfig)
    if key == "eval_every" and cfg.eval_every is not None and convex:
        return (
            f"eval_every has no effect on problem={_text(cfg.problem.name)}: a convex problem "
            "evaluates every logged row (log_every); eval_every is for the neural problems"
        )
    return None


def _tol_metric_unused(cfg: DictConfig, key: str) -> str | None:
    if key == "tol_metric" and cfg.tol is None:
        return "tol_metric has no effect without tol (nothing stops on it); set tol too"
    return None


def _optimizer_unused(cfg: DictConfig, key: str) -> str | None:
    optimizer = cfg.get("optimizer")
    if not key.startswith("optimizer.") or not isinstance(optimizer, DictConfig):
        return None
    sub, schedule = key.partition(".")[2], _text(optimizer.get("schedule"))
    if sub == "momentum" and optimizer.get("name") == "gd" and optimizer.momentum != 0:
        return (
            f"optimizer.momentum={optimizer.momentum} has no effect with optimizer=gd (plain "
            "steps x - lr g); choose optimizer=sgd for heavy-ball momentum"
        )
    if sub in ("step_every", "gamma") and schedule != "step":
        return (
            f"{key} has no effect with optimizer.schedule={schedule}; it is read by "
            "optimizer.schedule=step only"
        )
    return None


def _problem_unused(cfg: DictConfig, key: str) -> str | None:
    problem, global_ = cfg.problem, _text(cfg.granularity) == "global"
    if key == "problem.layout" and problem.get("layout") is not None and global_:
        return (
            "problem.layout has no effect with granularity=global; it names the tensors that "
            "granularity=layer compresses one by one"
        )
    split = _text(problem.get("split"))
    seeded = problem.get("split_seed") is not None
    if key == "problem.split_seed" and seeded and split in UNSHUFFLED_SPLITS:
        return (
            f"problem.split_seed has no effect with problem.split={split} (file order, no "
            "shuffle); it seeds the iid and label_sorted splits"
        )
    return None


def _network_unused(cfg: DictConfig, key: str) -> str | None:
    if key.startswith("network.") and network_node(cfg) is None:
        presets = ", ".join(name for name in SCHEMAS["network"] if name != NO_NETWORK)
        return (
            f"{key} has no effect without a network (network=none, the default); choose one "
            f"of {presets} (network=ethernet_1g {key}=...)"
        )
    return None


def _data_dir_unused(cfg: DictConfig, key: str) -> str | None:
    """Only a warning: where data would be looked for cannot change a result."""
    if key == "data_dir" and cfg.data_dir is not None and cfg.problem.name == "synthetic_logreg":
        return "data_dir is not read: problem=synthetic_logreg is generated, not loaded"
    return None


UNUSED_RULES = (
    _importance_unused,
    _ratio_unused,
    _eval_every_unused,
    _tol_metric_unused,
    _optimizer_unused,
    _problem_unused,
    _network_unused,
    _data_dir_unused,
)
