#!/usr/bin/env bash
# GPU check (issue 10): on a machine with CUDA, one epoch of experiment=thesis_cifar for TopK
# (CIFAR-10, batch 128, 390 rounds) and for MD Weighted Greedy with the joint importance solve
# (K = 200 at round 0, as thesis_cifar's every = 390), a few rounds of the per-tensor solve
# (5 steps), then the round-time split and the solver's cost of benchmarks/bench_neural.py.
# Prints images per second from each run's metrics.csv. Sized for < 5 minutes on one GPU.
# Usage: COMPRESS_BENCH_DATA=<datasets> bash benchmarks/gpu_check.sh [output folder]
set -euo pipefail
out="${1:-outputs/gpu_check}"
mkdir -p "$out"
python - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_check.sh needs a CUDA device"
print("device:", torch.cuda.get_device_name(0))
PY
run() {  # name, overrides...
  local name="$1"; shift
  python -m compress_bench experiment=thesis_cifar device=cuda progress=false \
    checkpoint_every=null hydra.run.dir="$out/$name" "$@"
  python - "$out/$name/metrics.csv" "$name" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
last = rows[-1]
print(f"{sys.argv[2]}: epoch {float(last['epoch']):.2f}, test accuracy {float(last['test_accuracy']):.4f}, "
      f"images/s {float(last['images_per_second']):.0f}, wall {float(last['wall_time']):.1f} s")
PY
}
run top_k_one_epoch compressor=top_k 'problem.train_batches=[1,2,3,4,5]' rounds=390 eval_every=390
run md_weighted_greedy_joint_one_epoch compressor=md_weighted_greedy importance.scope=joint \
  'problem.train_batches=[1,2,3,4,5]' rounds=390 eval_every=390
run md_weighted_greedy_per_tensor compressor=md_weighted_greedy rounds=3 eval_every=3 \
  importance.steps=5 importance.every=1
python benchmarks/bench_neural.py --device cuda --batch 128 --rounds 10 --importance-steps 2
