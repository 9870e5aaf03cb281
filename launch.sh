#!/usr/bin/env bash
# jaxdl launcher: sets itself up on first use, then runs the main job, a sweep or the tests.
#   ./launch.sh [hydra overrides]      main job (python -m jaxdl.main)
#   ./launch.sh -m [overrides]         Hydra multirun
#   ./launch.sh test [pytest args]     the test suite
#   ./launch.sh bench                  install the benchmark peers (torch, keras) too
#   ./launch.sh py SCRIPT [args]       run a script (e.g. experiments/...) inside the venv
#   ./launch.sh report DIR...          report.md + figures from run dirs (python -m jaxdl.report)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${JAXDL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.jaxdl-installed"

setup() {
  # $1: the extras needed now (e.g. "test" or "test,bench"). The stamp records the
  # pyproject hash and the extras installed; reinstall only when pyproject.toml changed
  # or an extra is missing (so `bench` then `test` does not reinstall).
  local extras="$1" hash have=""
  hash="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[launch] creating virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV"
  fi
  if [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$hash" ]; then
    have="$(sed -n 2p "$STAMP")"
  fi
  local missing="" e
  for e in ${extras//,/ }; do
    case ",$have," in *",$e,"*) ;; *) missing=1 ;; esac
  done
  if [ -z "$have" ] || [ -n "$missing" ]; then
    local all="$have"
    for e in ${extras//,/ }; do
      case ",$all," in *",$e,"*) ;; *) all="${all:+$all,}$e" ;; esac
    done
    echo "[launch] installing jaxdl[$all] (first run takes a few minutes)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$all]" >&2
    printf '%s\n%s\n' "$hash" "$all" > "$STAMP"
  fi
}

cd "$ROOT"
export WANDB_MODE="${WANDB_MODE:-offline}"   # never hang on a machine with no network
export WANDB_SILENT="${WANDB_SILENT:-true}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Keep freed buffers in the heap instead of unmapping them: XLA and PyTorch allocate
# fresh multi-MB buffers every step, and page-faulting them back in cost 15-35% of an
# LSTM training step on 2 CPU cores (experiments/bench_lstm.py). Set before start-up.
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-17179869184}"
export MALLOC_TOP_PAD_="${MALLOC_TOP_PAD_:-268435456}"
# Buffers above the 32 MB cap on that threshold (e.g. a [100, 64, 2048] gate gradient) are
# still mmapped fresh each step; backing them with transparent huge pages cuts their page
# faults 512-fold: 11-13% of an H=512 LSTM step (experiments/bench_lstm.py). glibc >= 2.35.
case ":${GLIBC_TUNABLES:-}:" in
  *glibc.malloc.hugetlb=*) ;;
  *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1" ;;
esac
case "${1:-}" in
  test)
    shift; setup test
    exec "$VENV/bin/python" -m pytest "$@" ;;
  bench)
    shift; setup "test,bench"
    [ $# -gt 0 ] && exec "$VENV/bin/python" "$@"; exit 0 ;;
  py)
    shift; setup test
    exec "$VENV/bin/python" "$@" ;;
  report)
    shift; setup test
    exec "$VENV/bin/python" -m jaxdl.report "$@" ;;
  *)
    setup test
    exec "$VENV/bin/python" -m jaxdl.main "$@" ;;
esac
