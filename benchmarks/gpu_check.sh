#!/usr/bin/env bash
# GPU check (issues 10 and 17), on the offline data (data_batch_1.bin: 10,000 training images;
# test_subset/test_batch_first1000.bin: 1,000 test images), for a GPU machine without internet:
#  1. benchmarks/bench_neural.py --operators at batch 128, n = 1 and 4: images/s of the CLI's
#     round for identity, TopK, RandK, MD Weighted Greedy (joint solve, K = 200, every 78
#     rounds) and PowerSGD, and the share of the round outside forward/backward;
#  2. the sweep of make figures-cifar-offline (experiment=thesis_cifar_offline: 6 operators x
#     20 epochs of 78 rounds) and its figure, with the sweep's wall time (goal: under 7
#     minutes) and each job's images/s. The checkpoints (90-135 MB written every 78 rounds, 120
#     in the sweep) are left out (checkpoint_every=null): they change no result, and the goal is
#     the time of the training; make figures-cifar-offline keeps them.
# Sized for about 9 minutes on one H200 (the sweep is most of it).
# Usage, from the repository root (the package installed, or on PYTHONPATH):
#   COMPRESS_BENCH_DATA=<datasets> bash benchmarks/gpu_check.sh [output folder]
# GPU_CHECK_DRY=1 runs the same steps on the CPU in a few minutes, on a few images (a check of
# the script, not a measurement).
# The CLI runs from the output folder, never from the repository root: there the source folder
# compress_bench/ would shadow the installed package, whose conf/ it lacks.
set -euo pipefail
repo="$(pwd)"
out="${1:-outputs/gpu_check}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# PYTHONPATH's entries made absolute, so that they still hold from the output folder
PYTHONPATH="$(python -c 'import os; print(os.pathsep.join(os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p))')"
export PYTHONPATH
if [[ "${GPU_CHECK_DRY:-0}" == 1 ]]; then
  device=cpu
  bench=(--batch 8 --rounds 1 --warmup 1 --importance-steps 2)
  sweep=(rounds=2 eval_every=1 problem.train_limit=64 problem.test_limit=100 problem.batch_size=16
    importance.steps=2)
else
  device=cuda
  python - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_check.sh needs a CUDA device (GPU_CHECK_DRY=1: the CPU)"
PY
  bench=(--batch 128 --rounds 30 --warmup 5)
  sweep=()
fi

echo "== 1. bench_neural.py --operators (batch 128 per worker, n = 1 and 4)"
python "$repo/benchmarks/bench_neural.py" --operators --device "$device" --workers 1 4 "${bench[@]}"

echo "== 2. the sweep of experiment=thesis_cifar_offline ($device) and its figure"
rm -rf "$out/thesis_cifar_offline"
start=$(date +%s)
(cd "$out" && python -m compress_bench -m experiment=thesis_cifar_offline device="$device" \
  checkpoint_every=null progress=false hydra.sweep.dir="$out/thesis_cifar_offline" \
  ${sweep[@]+"${sweep[@]}"})
seconds=$(( $(date +%s) - start ))
(cd "$out" && python -m compress_bench.report.figures thesis_cifar_offline \
  "$out/thesis_cifar_offline" "$out/thesis_cifar_offline.png")
python - "$out/thesis_cifar_offline" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/summary.json"), key=lambda p: int(p.parent.name)):
    s = json.loads(path.read_text())
    rounds, wall = s.get("rounds_done", 0), s.get("wall_time") or float("nan")
    batch = s.get("config", {}).get("problem", {}).get("batch_size", 128)
    final = s.get("final", {})
    print(f"{s.get('compressor'):>20} {s.get('status')}: {rounds} rounds, epoch {final.get('epoch')}, "
          f"test accuracy {final.get('test_accuracy')}, {wall:.1f} s, "
          f"{rounds * batch / wall:.0f} images/s (evaluations included)")
PY
echo "sweep wall time: ${seconds} s (goal: under 420 s)"
