"""Structured configs: the schema every composed config is validated against, once.

Each config group option (``conf/<group>/<option>.yaml``) extends the dataclass stored here
under ``schema/<group>/<option>``, so a typo in a key, a string where a number belongs, or a
value outside an enumeration is rejected by OmegaConf when the config is composed, before
anything runs. Range checks that types cannot express live in :func:`validate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from compress_bench.errors import ConfigError

# Enum member names are what users type (OmegaConf validates strings against the names).


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
    slides = "slides"


class ImportanceVariant(Enum):
    spec = "spec"
    thesis_code = "thesis_code"


class ImportanceInit(Enum):
    uniform = "uniform"
    abs_grad = "abs_grad"


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DType(Enum):
    float64 = "float64"
    float32 = "float32"


class Aggregation(Enum):
    mean = "mean"
    majority_vote = "majority_vote"


class TopKScale(Enum):
    none = "none"
    dk = "dk"


class Rounding(Enum):
    nearest = "nearest"
    log2 = "log2"


class Sampling(Enum):
    uniform = "uniform"
    bernoulli = "bernoulli"


# --- problems ------------------------------------------------------------------------------


@dataclass
class LogRegConfig:
    """l2-regularised logistic regression (spec section 25)."""

    name: str = MISSING
    l2: float = 0.1
    split: Split = Split.iid
    split_seed: int | None = None  # None: the run's seed
    init: Init = Init.zeros
    storage: Storage = Storage.auto  # auto: sparse (CSR) below 30% non-zeros, else dense


@dataclass
class MushroomsConfig(LogRegConfig):
    name: str = "mushrooms"


@dataclass
class SyntheticLogRegConfig(LogRegConfig):
    """A generated problem: Gaussian features, labels from a random linear model plus noise."""

    name: str = "synthetic_logreg"
    n_samples: int = 600
    dim: int = 20
    data_seed: int = 0
    label_noise: float = 0.5


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


@dataclass
class ImportanceConfig:
    """The importance solver of the md_* compressors (spec section 12)."""

    variant: ImportanceVariant = ImportanceVariant.spec
    steps: int = 100
    lr: float = 1.0
    rho: float = 1.0
    entropy: float = 0.0
    warm_start: bool = True
    init: ImportanceInit = ImportanceInit.uniform


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
    levels: int = 8
    norm: float = 2.0  # p in [1, inf]; inf is accepted


@dataclass
class QSGDConfig:
    name: str = "qsgd"
    levels: int = 8


@dataclass
class NaturalDitheringConfig:
    name: str = "natural_dithering"
    levels: int = 8
    norm: float = 2.0


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


# --- the run -------------------------------------------------------------------------------


@dataclass
class Config:
    problem: Any = MISSING
    compressor: Any = MISSING
    importance: Any = MISSING
    quantizer: Any = MISSING
    method: Any = MISSING
    ratio: float = 0.2
    n_workers: int = 1
    rounds: int = 2000
    lr: Any = "auto"  # a positive float, or "auto"
    seed: int = 0
    tol: float | None = None
    max_bits: float | None = None
    log_every: int = 10
    device: Device = Device.auto
    dtype: DType = DType.float64
    bits_convention: BitsConvention = BitsConvention.spec
    data_dir: str | None = None
    progress: bool | None = None  # None: a progress bar only when stderr is a terminal


SCHEMAS: dict[str, dict[str, type]] = {
    "problem": {"mushrooms": MushroomsConfig, "synthetic_logreg": SyntheticLogRegConfig},
    "compressor": {
        "identity": IdentityConfig,
        "rand_k": RandKConfig,
        "top_k": TopKConfig,
        "biased_rand_k": BiasedRandKConfig,
        "adaptive_rand_k": AdaptiveRandKConfig,
        "md_stochastic": MDUnweightedConfig,
        "md_greedy": MDUnweightedConfig,
        "md_greedy_weighted": MDWeightedConfig,
        "md_weighted_greedy": MDWeightedConfig,
    },
    "importance": {"spec": ImportanceConfig, "thesis_code": ImportanceConfig},
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
    "method": {"dcgd": DCGDConfig},
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


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, options in SCHEMAS.items():
        for option, node in options.items():
            cs.store(group=f"schema/{group}", name=option, node=node)


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return float(value)


def validate(cfg: DictConfig) -> None:
    """Range checks the schema's types cannot express; raise ConfigError with one line."""
    ratio = _number(cfg.ratio, "ratio")
    if not (0.0 < ratio <= 1.0) or math.isnan(ratio):
        raise ConfigError(f"ratio must be in (0, 1], got {cfg.ratio}")
    if cfg.n_workers < 1:
        raise ConfigError(f"n_workers must be at least 1, got {cfg.n_workers}")
    if cfg.rounds < 0:
        raise ConfigError(f"rounds must be non-negative, got {cfg.rounds}")
    if cfg.log_every < 1:
        raise ConfigError(f"log_every must be at least 1, got {cfg.log_every}")
    if cfg.lr != "auto":
        lr = _number(cfg.lr, "lr (a positive number or 'auto')")
        if not lr > 0 or not math.isfinite(lr):
            raise ConfigError(f"lr must be positive (or 'auto'), got {cfg.lr}")
    if cfg.tol is not None and not cfg.tol >= 0:
        raise ConfigError(f"tol must be non-negative, got {cfg.tol}")
    if cfg.max_bits is not None and not cfg.max_bits > 0:
        raise ConfigError(f"max_bits must be positive, got {cfg.max_bits}")
    if cfg.problem.l2 < 0:
        raise ConfigError(f"problem.l2 must be non-negative, got {cfg.problem.l2}")
