#!/usr/bin/env bash
# Reproduce the MNIST table (LeCun et al. 1998 rows + a modern MLP) and the hidden-size
# sweep of the seed's rules of thumb. Run dirs go under experiments/mnist/runs/ (ignored
# by git); experiments/mnist/report.py turns them into experiments/mnist/RESULTS.md.
#   ./launch.sh py -c 1 || true; bash experiments/mnist/run.sh     (about 20-30 min on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
R=experiments/mnist/runs
L="logger.mode=${WANDB_MODE:-offline} train.progress=false"
./launch.sh experiment=mnist_seed $L hydra.run.dir=$R/seed_300
./launch.sh experiment=mnist_seed model.hidden=[1000] $L hydra.run.dir=$R/seed_1000
./launch.sh experiment=mnist_seed model.hidden=[300,100] $L hydra.run.dir=$R/seed_300_100
./launch.sh experiment=mnist_modern $L hydra.run.dir=$R/modern_800
# the seed's rules of thumb for the hidden size: log2(784) ~ 10, sqrt(784+10)+alpha ~ 29..38,
# sqrt(784*10) ~ 89; and the seed's 300 for reference (already above)
./launch.sh -m experiment=mnist_seed 'model.hidden=choice([10],[29],[38],[89])' train.epochs=20 \
  train.eval_every=5 $L hydra.sweep.dir=$R/hidden_sweep 'hydra.sweep.subdir=${hydra.job.num}'
.venv/bin/python experiments/mnist/report.py
