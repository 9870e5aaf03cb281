#!/usr/bin/env bash
# One prepared run on a lent GPU machine: every GPU figure of the README in one command.
# The GPU image has jax, flax, optax, orbax, torch, pytest; no hydra/omegaconf/wandb, so the
# harness tests stay on the CPU. Writes logs and JSON to $OUT. About 10 minutes in all; the
# parts run in order of importance, each under its own timeout, so a cut-off run still
# returns the first figures.
#   OUT=/tmp/out bash experiments/gpu_check.sh [part ...]      parts: info step workload replicas memory tests lstm
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TF_CPP_MIN_LOG_LEVEL=2
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PARTS=${*:-info step workload replicas memory tests lstm}
has() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
quiet() { grep -v -i -E "warn|^\s*$" ; }

if has info; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
  python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, jax.devices(), '| flax', flax.__version__, '| torch', torch.__version__, torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" 2>&1 | tee -a "$OUT/gpu.txt"
fi
# 1. The training step at the four shapes: jaxdl vs cuDNN vs Flax, TF32 and fp32, jaxdl bf16.
if has step; then
  timeout 300 python3 experiments/bench_gpu_step.py --json "$OUT/bench_gpu_step.json" 2>&1 | quiet | tee "$OUT/bench_gpu_step.txt"
fi
# 2. The whole TBPTT workload (echo default job; textgen H=512), jaxdl vs a PyTorch TBPTT loop on the GPU.
if has workload; then
  timeout 240 python3 experiments/bench_tbptt_workload.py --rounds 1 --json "$OUT/bench_workload.json" 2>&1 | quiet | tee "$OUT/bench_workload.txt"
  timeout 120 python3 experiments/bench_tbptt_workload.py --rounds 1 --workloads textgen --dtype bfloat16 --peers jaxdl \
    --json "$OUT/bench_workload_bf16.json" 2>&1 | quiet | tee "$OUT/bench_workload_bf16.txt"
fi
# 3. 64 seeds vmapped in one jaxdl program against one PyTorch run (64 runs in sequence take 64x as long).
if has replicas; then
  timeout 150 python3 experiments/bench_tbptt_workload.py --rounds 1 --workloads echo --replicas 64 \
    --json "$OUT/bench_workload_x64.json" 2>&1 | quiet | tee "$OUT/bench_workload_x64.txt"
fi
# 4. Device memory and time against k2, with and without remat.
if has memory; then
  timeout 200 python3 experiments/bench_remat_memory.py --k2 1000 10000 100000 --limit-gb 40 \
    --json "$OUT/bench_remat_memory.json" 2>&1 | quiet | tee "$OUT/bench_remat_memory.txt"
fi
# 5. Gradient tests on the GPU (every kernel path, bf16 and remat included).
if has tests; then
  # addopts cleared: pyproject's "-n 2" needs pytest-xdist, which the GPU image may lack
  timeout 240 python3 -m pytest -q -x -p no:cacheprovider -o addopts= -m "not slow" tests/test_lstm_grad.py tests/test_tbptt.py \
    tests/test_precision.py tests/test_remat.py 2>&1 | tail -15 | tee "$OUT/tests_gpu.txt"
fi
# 6. The single-step peers of the README's speed table (one round).
if has lstm; then
  timeout 200 python3 experiments/bench_lstm.py --peers jaxdl jaxdl_hoist autodiff_scan flax torch \
    --rounds 1 --reps 20 --json "$OUT/bench_lstm_gpu.json" 2>&1 | quiet | tee "$OUT/bench_lstm_gpu.txt"
fi
