"""Hydra configs, shipped inside the package as ``compress_bench.conf`` (see pyproject.toml)."""
