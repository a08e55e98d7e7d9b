# compress-bench: every target installs what it needs first (into .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch; override for another build, e.g. TORCH="torch==2.13.0 --index-url ..."
TORCH  ?= torch==2.13.0
ARGS   ?=

# The offline dataset copies beside the repository (../shared/datasets), when present and
# when COMPRESS_BENCH_DATA is not set; otherwise datasets are downloaded to the user cache.
SHARED_DATA := $(abspath ../shared/datasets)
ifeq ($(origin COMPRESS_BENCH_DATA),undefined)
ifneq ($(wildcard $(SHARED_DATA)/mushrooms/mushrooms),)
export COMPRESS_BENCH_DATA := $(SHARED_DATA)
endif
endif

.PHONY: help install run test test-slow lint format bench figures figures-cifar figures-cifar-offline figures-mnist docs clean example-ddp

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv, install torch (CPU) and the project with its dev tools and cluster launchers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev,cluster]"
	touch $(STAMP)

run: install  ## run the default experiment (extra overrides: make run ARGS="ratio=0.1")
	$(BIN)/compress-bench $(ARGS)

test: install  ## the test suite (fast: under 10 minutes on 2 cores)
	$(BIN)/pytest -q

test-slow: install  ## the slow statistical and end-to-end checks
	$(BIN)/pytest -q -m slow

lint: install  ## ruff: lint and formatting
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install  ## the benchmarks (ratios measured in one run on this machine)
	$(BIN)/python benchmarks/bench_dcgd.py
	$(BIN)/python benchmarks/bench_importance.py
	$(BIN)/python benchmarks/bench_compressors.py
	$(BIN)/python benchmarks/bench_methods.py
	$(BIN)/python benchmarks/bench_threads.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_neural.py
	$(BIN)/python benchmarks/bench_round_ops.py
	$(BIN)/python benchmarks/bench_lowrank.py
	$(BIN)/python benchmarks/bench_distributed.py
	$(BIN)/python benchmarks/bench_ddp.py

figures-cifar: install  ## the thesis figure ResNet_CIFAR10 (6 operators x 20 epochs: needs a GPU)
	rm -rf $(FIGURES)/thesis_cifar
	$(BIN)/compress-bench -m experiment=thesis_cifar hydra.sweep.dir=$(FIGURES)/thesis_cifar progress=false
	$(BIN)/python -m compress_bench.report.figures thesis_cifar $(FIGURES)/thesis_cifar $(FIGURES)/thesis_cifar.png

figures-cifar-offline: install  ## thesis_cifar on the offline data (10,000 training, 1,000 test images; a GPU)
	rm -rf $(FIGURES)/thesis_cifar_offline
	$(BIN)/compress-bench -m experiment=thesis_cifar_offline hydra.sweep.dir=$(FIGURES)/thesis_cifar_offline progress=false
	$(BIN)/python -m compress_bench.report.figures thesis_cifar_offline $(FIGURES)/thesis_cifar_offline $(FIGURES)/thesis_cifar_offline.png

clean:  ## remove the virtual environment and caches (outputs/ is kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info

FIGURES := outputs/figures
figures: install  ## regenerate the README's figures (thesis LogReg, biased compression, error feedback) and its tables (between <!-- table:NAME --> markers)
	rm -rf $(FIGURES)/thesis_logreg $(FIGURES)/biased_compression $(FIGURES)/error_feedback $(FIGURES)/error_feedback_unbiased
	$(BIN)/compress-bench -m experiment=thesis_logreg hydra.sweep.dir=$(FIGURES)/thesis_logreg progress=false
	$(BIN)/python -m compress_bench.report.figures thesis_logreg $(FIGURES)/thesis_logreg $(FIGURES)/thesis_logreg.png
	$(BIN)/compress-bench -m experiment=biased_compression hydra.sweep.dir=$(FIGURES)/biased_compression progress=false
	cp $(FIGURES)/thesis_logreg.png docs/figures/thesis_logreg.png
	$(BIN)/compress-bench -m experiment=error_feedback hydra.sweep.dir=$(FIGURES)/error_feedback progress=false
	$(BIN)/compress-bench -m experiment=error_feedback operator=rand_k,natural method=dcgd,diana hydra.sweep.dir=$(FIGURES)/error_feedback_unbiased progress=false
	cp $(FIGURES)/biased_compression/comparison.png docs/figures/biased_compression.png
	cp $(FIGURES)/error_feedback/comparison.png docs/figures/error_feedback.png
	cp $(FIGURES)/error_feedback_unbiased/comparison.png docs/figures/error_feedback_unbiased.png
	rm -rf $(FIGURES)/lowrank_ef21
	$(BIN)/compress-bench -m experiment=lowrank_ef21 hydra.sweep.dir=$(FIGURES)/lowrank_ef21 progress=false
	cp $(FIGURES)/lowrank_ef21/comparison.png docs/figures/lowrank_ef21.png
	$(BIN)/python -m compress_bench.report.table --readme README.md thesis_logreg=$(FIGURES)/thesis_logreg error_feedback=$(FIGURES)/error_feedback error_feedback_unbiased=$(FIGURES)/error_feedback_unbiased

figures-mnist: install  ## the MNIST figures of issue 16 (eSGD; EF21 with low-rank operators per tensor)
	rm -rf $(FIGURES)/esgd_mnist_a $(FIGURES)/esgd_mnist_b $(FIGURES)/lowrank_ef21_mnist $(FIGURES)/lowrank_ef21_mnist_top_k
	$(BIN)/compress-bench -m experiment=esgd_mnist compressor=esgd method=dcgd hydra.sweep.dir=$(FIGURES)/esgd_mnist_a progress=false
	$(BIN)/compress-bench -m experiment=esgd_mnist compressor=top_k method=ef hydra.sweep.dir=$(FIGURES)/esgd_mnist_b progress=false
	$(BIN)/python -m compress_bench.report.figures esgd_mnist $(FIGURES)/esgd_mnist_a $(FIGURES)/esgd_mnist_b $(FIGURES)/esgd_mnist.png
	cp $(FIGURES)/esgd_mnist.png docs/figures/esgd_mnist.png
	$(BIN)/compress-bench -m experiment=lowrank_ef21_mnist hydra.sweep.dir=$(FIGURES)/lowrank_ef21_mnist progress=false
	$(BIN)/compress-bench -m experiment=lowrank_ef21_mnist operator=top_k ratio=0.0182,0.0347,0.0677 hydra.sweep.dir=$(FIGURES)/lowrank_ef21_mnist_top_k progress=false
	$(BIN)/python -m compress_bench.report.figures lowrank_ef21_mnist $(FIGURES)/lowrank_ef21_mnist $(FIGURES)/lowrank_ef21_mnist_top_k $(FIGURES)/lowrank_ef21_mnist.png
	cp $(FIGURES)/lowrank_ef21_mnist.png docs/figures/lowrank_ef21_mnist.png

docs: install  ## regenerate docs/compressors.md from the registries
	$(BIN)/python -m compress_bench.docs > docs/compressors.md

example-ddp: install  ## MNIST under torchrun, 2 ranks, with the DDP hook (ARGS="--steps 500 --compressor power_sgd --rank 2")
	$(BIN)/torchrun --standalone --nproc_per_node=2 examples/ddp_mnist.py $(ARGS)
