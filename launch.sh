#!/usr/bin/env bash
# jaxdl launcher: sets itself up on first use, then runs the main job, a sweep or the tests.
#   ./launch.sh [hydra overrides]      main job (python -m jaxdl.main)
#   ./launch.sh -m [overrides]         Hydra multirun
#   ./launch.sh test [pytest args]     lint (ruff) and the test suite (installs the bench peers too)
#   ./launch.sh bench [SCRIPT args]    install the benchmark peers (torch, keras) too; run SCRIPT
#   ./launch.sh py SCRIPT [args]       run a script (e.g. experiments/...) inside the venv
#   ./launch.sh report DIR... [opts]   python -m jaxdl.report (run dirs -> report.md)
#   ./launch.sh doctor                 what this machine has and what set-up would do; installs nothing
#   ./launch.sh lock [uv options]      re-resolve requirements/*.txt from pyproject.toml (e.g. --upgrade)
#
# Set-up installs exactly the committed lock, requirements/lock.txt, plus requirements/<accel>.txt
# (the packages JAX's GPU or TPU build adds) for the accelerator it detects: cuda13 where
# nvidia-smi reports driver >= 580, cuda12 with an older driver, tpu on a TPU VM, the CPU build
# otherwise. It installs with uv (fetched once per machine by pip), or with pip if uv cannot be had.
#   JAXDL_ACCEL=cpu|cuda12|cuda13|tpu   use this build instead of the detected one
#   JAXDL_UNLOCKED=1                    resolve pyproject.toml fresh instead of installing the lock
#   JAXDL_INSTALLER=pip                 install with pip, not uv
#   JAXDL_UV=/path/to/uv                use this uv instead of fetching the pinned one
#   JAXDL_VENV=DIR                      the virtual environment (default: .venv in the repo)
# Nothing is reinstalled while pyproject.toml, the lock, the accelerator and the mode stay the
# same; when one changes, only the packages that differ are installed or removed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${JAXDL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.jaxdl-installed"
LOCK="$ROOT/requirements/lock.txt"
UV_VERSION="0.13.9"                   # the uv that installs and locks (pinned: same resolution everywhere)
UV_HOME="${XDG_CACHE_HOME:-${HOME:-$ROOT}/.cache}/jaxdl/uv-$UV_VERSION"
UV=""

say() { echo "[launch] $*" >&2; }

uv_path() { echo "${JAXDL_UV:-$UV_HOME/bin/uv}"; }

ensure_uv() {
  # Sets UV to a working uv, fetching the pinned one with pip into the user's cache once per
  # machine; leaves it empty (pip does the work) if JAXDL_INSTALLER=pip or uv cannot be had.
  UV=""
  [ "${JAXDL_INSTALLER:-uv}" = pip ] && return 0
  local bin; bin="$(uv_path)"
  if [ ! -x "$bin" ] && [ -z "${JAXDL_UV:-}" ]; then
    say "fetching uv $UV_VERSION into $UV_HOME (once per machine)"
    local part="$UV_HOME.part.$$"
    if "$PY" -m pip install -qq --disable-pip-version-check --target "$part" "uv==$UV_VERSION" >&2; then
      mkdir -p "$(dirname "$UV_HOME")"
      mv -T "$part" "$UV_HOME" 2>/dev/null || rm -rf "$part"     # another launch may have won the race
    else
      rm -rf "$part"
      say "could not fetch uv; installing with pip instead"
    fi
  fi
  if [ -x "$bin" ]; then UV="$bin"; elif [ -n "${JAXDL_UV:-}" ]; then say "JAXDL_UV=$JAXDL_UV is not executable; using pip"; fi
}

stamp_get() { [ -f "$STAMP" ] && sed -n "s/^$1=//p" "$STAMP" | head -n1 || true; }

pip_q() { "$VENV/bin/python" -m pip -qq --disable-pip-version-check "$@" >&2; }

install_env() {
  # $1 mode (locked|unlocked), $2 accel, $3 overlay file ("" for cpu), $4 the previous overlay
  local mode="$1" accel="$2" overlay="$3" old="$4" vpy="$VENV/bin/python"
  if [ "$mode" = locked ]; then
    if [ -n "$UV" ]; then            # exactly the lock: installs what differs, removes what is not in it
      "$UV" pip sync -q --python "$vpy" "$LOCK" ${overlay:+"$overlay"}
    else
      if [ -n "$old" ] && [ "$old" != "$overlay" ] && [ -f "$old" ]; then
        # shellcheck disable=SC2046
        pip_q uninstall -y $("$PY" -m jaxdl.setup.lockfile names "$old") || true
      fi
      pip_q install --require-hashes --no-deps -r "$LOCK" ${overlay:+-r "$overlay"}
    fi
  else
    local jax=jax; [ "$accel" != cpu ] && jax="jax[$accel]"
    if [ -n "$UV" ]; then            # the newest versions pyproject.toml allows, then exactly those
      "$UV" pip compile -q --python "$vpy" "$ROOT/pyproject.toml" --extra test <(echo "$jax") \
        -o "$VENV/.unlocked.txt"
      "$UV" pip sync -q --python "$vpy" "$VENV/.unlocked.txt"
    else
      pip_q install --upgrade -e "$ROOT[test]" "$jax"
      return 0
    fi
  fi
  if [ -n "$UV" ]; then "$UV" pip install -q --python "$vpy" --no-deps -e "$ROOT"
  else pip_q install --no-deps -e "$ROOT"; fi
}

install_bench() {
  # torch and keras, unlocked but held to the lock's versions of everything they share; pip,
  # since this machine's pip configuration may point at a local CPU build of torch.
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$UV" pip install -q --python "$VENV/bin/python" pip
  "$PY" -m jaxdl.setup.lockfile constraints "$LOCK" > "$VENV/.bench-constraints.txt"
  # shellcheck disable=SC2046
  pip_q install -c "$VENV/.bench-constraints.txt" $("$PY" -m jaxdl.setup.lockfile extra bench)
}

setup() {
  # $1: extra package sets wanted now besides the runtime and test packages ("" or "bench").
  local want="$1" accel mode=locked overlay="" key
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
    say "jaxdl needs Python >= 3.11; $PY is $("$PY" --version 2>&1 || echo missing). Set PYTHON=python3.11 (or newer)"
    exit 2; }
  accel="$("$PY" -m jaxdl.setup.accel)" || exit 2
  if [ -n "${JAXDL_UNLOCKED:-}" ] && [ "$JAXDL_UNLOCKED" != 0 ]; then mode=unlocked; fi
  [ "$accel" != cpu ] && overlay="$ROOT/requirements/$accel.txt"
  if [ "$mode" = locked ]; then
    "$PY" -m jaxdl.setup.lockfile check || exit 2
    if [ -n "$overlay" ] && [ ! -f "$overlay" ]; then say "$overlay is missing; run ./launch.sh lock"; exit 2; fi
  fi
  key="$("$PY" -m jaxdl.setup.lockfile key "$mode" "$accel")"
  local have_key have_extras have_accel
  have_key="$(stamp_get key)"; have_extras="$(stamp_get extras)"; have_accel="$(stamp_get accel)"
  if [ -x "$VENV/bin/python" ] && [ "$have_key" = "$key" ] && { [ -z "$want" ] || [[ ",$have_extras," == *",$want,"* ]]; }; then
    return 0
  fi
  ensure_uv
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment in $VENV"
    if [ -n "$UV" ]; then "$UV" venv -q --seed --clear --python "$PY" "$VENV"; else "$PY" -m venv "$VENV"; fi
    have_key=""
  fi
  local how="${UV:+uv}"; how="${how:-pip}"
  if [ "$have_key" != "$key" ]; then
    if [ -n "$have_accel" ] && [ "$have_accel" != "$accel" ]; then
      say "accelerator $have_accel -> $accel: installing the packages that differ ($how)"
    elif [ "$mode" = locked ]; then
      say "installing the locked environment: requirements/lock.txt${overlay:+ + requirements/$accel.txt} ($accel, $how)"
    else
      say "JAXDL_UNLOCKED: resolving pyproject.toml fresh for $accel ($how)"
    fi
    local old_overlay=""; [ -n "$have_accel" ] && [ "$have_accel" != cpu ] && old_overlay="$ROOT/requirements/$have_accel.txt"
    rm -f "$STAMP"                       # a set-up cut short installs again next time
    install_env "$mode" "$accel" "$overlay" "$old_overlay"
    have_extras=""                       # the sync removed packages outside the lock
  fi
  if [ -n "$want" ] && [[ ",$have_extras," != *",$want,"* ]]; then
    say "installing the $want extra (pip, held to the lock's versions)"
    install_bench
    have_extras="${have_extras:+$have_extras,}$want"
  fi
  printf 'key=%s\naccel=%s\nmode=%s\ninstaller=%s\nextras=%s\nlock_sha256=%s\n' "$key" "$accel" "$mode" "$how" \
    "$have_extras" "$(sha256sum "$LOCK" | cut -c1-64)" > "$STAMP"
}

lock() {
  # requirements/lock.txt: pyproject's dependencies + the test extra for every platform and every
  # Python >= requires-python (one version per package), with hashes; then each accelerator's
  # additions, resolved against it. Pins already in the files are kept unless asked (--upgrade,
  # --upgrade-package NAME); other arguments go to `uv pip compile`.
  ensure_uv
  [ -n "$UV" ] || { say "./launch.sh lock needs uv (it could not be fetched; set JAXDL_UV=/path/to/uv)"; exit 2; }
  mkdir -p "$ROOT/requirements"
  local common=(--universal --fork-strategy fewest --generate-hashes --python-version 3.11 -q
                --custom-compile-command "./launch.sh lock")
  "$UV" pip compile "${common[@]}" "$ROOT/pyproject.toml" --extra test -o "$LOCK" "$@"
  "$PY" -m jaxdl.setup.lockfile header "$LOCK"
  local jaxv names=() n a
  jaxv="$("$PY" -m jaxdl.setup.lockfile version "$LOCK" jax)"
  while read -r n; do names+=(--no-emit-package "$n"); done < <("$PY" -m jaxdl.setup.lockfile names "$LOCK")
  for a in cuda12 cuda13 tpu; do
    "$UV" pip compile "${common[@]}" <(echo "jax[$a]==$jaxv") -c "$LOCK" "${names[@]}" \
      -o "$ROOT/requirements/$a.txt" "$@"
    "$PY" -m jaxdl.setup.lockfile header "$ROOT/requirements/$a.txt"
  done
  say "wrote $(cd "$ROOT" && ls requirements/*.txt | tr '\n' ' ')($(cat "$ROOT"/requirements/*.txt | wc -c) bytes); commit them"
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
    # the benchmark peers too: the cells' tests compare against torch.nn.GRU / nn.RNN
    shift; setup bench
    say "ruff check (pyproject.toml [tool.ruff])"
    "$VENV/bin/ruff" check -q "$ROOT" || { say "ruff found the problems above; fix them (many: $VENV/bin/ruff check --fix)"; exit 1; }
    exec "$VENV/bin/python" -m pytest "$@" ;;
  bench)
    shift; setup bench
    [ $# -gt 0 ] && exec "$VENV/bin/python" "$@"; exit 0 ;;
  py)
    shift; setup ""
    exec "$VENV/bin/python" "$@" ;;
  report)
    shift; setup ""
    exec "$VENV/bin/python" -m jaxdl.report "$@" ;;
  doctor)
    shift
    DPY="$PY"; [ -x "$VENV/bin/python" ] && DPY="$VENV/bin/python"
    JAXDL_VENV="$VENV" JAXDL_UV_PATH="$(uv_path)" JAXDL_INSTALLER="${JAXDL_INSTALLER:-uv}" \
      PYTHONDONTWRITEBYTECODE=1 exec "$DPY" -m jaxdl.doctor "$@" ;;
  lock)
    shift; lock "$@" ;;
  *)
    setup ""
    exec "$VENV/bin/python" -m jaxdl.main "$@" ;;
esac
