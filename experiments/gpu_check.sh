#!/usr/bin/env bash
# One prepared run on a lent GPU machine (its image has jax, flax, optax, torch, pytest;
# no hydra/wandb, so the harness tests stay on the CPU). Writes logs to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_lstm_grad.py tests/test_tbptt.py \
  tests/test_workflow.py 2>&1 | tail -15 | tee "$OUT/tests_gpu.txt"
timeout 200 python3 experiments/bench_lstm.py --peers jaxdl jaxdl_hoist autodiff_scan flax torch \
  --rounds 2 --reps 20 --json "$OUT/bench_lstm_gpu.json" 2>&1 | grep -v -i warn | tee "$OUT/bench_lstm_gpu.txt"
timeout 150 python3 experiments/bench_tbptt_memory.py --lengths 10000 100000 2>&1 | tee "$OUT/bench_mem_gpu.txt"
