"""Updates per second of the default job's training program against the epoch's length:
the echo default job (hidden 64, 32 streams, TBPTT(10, 20), or an online estimator with an
update every 10 steps) at task.length = 2,000 to 2,000,000 steps (200 to 200,000 updates
per epoch), in one run, for this checkout and for older commits' checkouts side by side.

    ./launch.sh py experiments/bench_epoch_length.py --rounds 2 \
        --tree new=. --tree c9cde96=/tmp/old-c9c --tree 867ff45=/tmp/old-867

Each measurement is a fresh process (`--worker`) that builds the job from that checkout's
own conf/ and code (task.length=L), compiles the programs train_loop compiles (jit(vmap(...))
of one member) and times them:
  chunked  train_chunk over --updates updates in the middle of the epoch (train.chunk_s, the
           default: the loop calls this program chunk by chunk);
  whole    train_chunk over the whole epoch (train.chunk_s=null), or train_epoch where the
           checkout has no chunks (867ff45) or for the online estimators of c9cde96;
the chunk the median of --repeats calls, the whole epoch the median of up to --repeats
calls (one where an epoch takes over a quarter of --whole-s). The whole epoch is timed only
up to --whole-max updates per epoch, and only where the chunked rate says it takes at most
--whole-s seconds (so not c9cde96's long streams, nor the online estimator's: the table
says so). The measurements run round by round, every variant once per round, so machine
noise falls on all alike; the table gives each median and its ratio to the same tree and
path at the shortest length. Evaluation, checkpoints and the host work between chunks are
not included.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ["task=echo", "model=lstm", "model.hidden=64", "task.streams=32", "task.test_length=200",
        "task.val_length=0"]                            # TBPTT(10, 20): conf/config.yaml's


def _build(tree: Path, overrides: list[str]):
    """The trainer of the job in checkout `tree` (its own config parsing and task builders)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    with initialize_config_dir(config_dir=str(tree / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)
    if (tree / "jaxdl" / "configure.py").exists():
        from jaxdl.configure import parse
        from jaxdl.runner import make_trainer
        from jaxdl.tasks import TASKS, build
        c = parse(cfg, overrides)
        task = build(TASKS[c.task.name], c.task, c.seed, c.data_dir, c.model, c.optim, c.train)
        return make_trainer(task, c)[0]
    from jaxdl.config import parse                       # 867ff45: a RunSpec
    from jaxdl.runner import make_trainer
    from jaxdl.tasks import builder, call_task
    spec = parse(cfg)
    kw = dict(spec.task_params, seed=spec.seed, hidden=spec.model.params.get("hidden"), lr=spec.optim["lr"],
              batch_size=spec.train.get("batch_size", 32), epochs=spec.train["epochs"])
    return make_trainer(call_task(builder(spec.task), spec.data_dir, **kw), spec)[0]


def worker(tree: Path, overrides: list[str], updates: int, repeats: int, whole_max: int,
           whole_s: float) -> dict:
    sys.path.insert(0, str(tree))                        # that checkout's jaxdl, whatever is installed
    import jax
    import numpy as np

    from jaxdl.train.loop import init_members
    tr = _build(tree, overrides)
    S = getattr(tr, "updates_per_epoch", None) or tr.steps_per_epoch
    state, inputs = init_members(tr, 0, 1), tr.epoch_inputs(0)
    out = {"updates_per_epoch": S}

    def timed(fn, *args):
        t0 = time.perf_counter()
        res = fn(*args)
        jax.block_until_ready(res)
        return time.perf_counter() - t0

    chunk = getattr(tr, "train_chunk", None)
    if chunk is not None:
        fn = jax.jit(jax.vmap(chunk, in_axes=(0, None, None, None))).lower(
            state, inputs, np.int32(0), np.int32(1)).compile()
        k = min(updates, S)
        start = np.int32((S - k) // 2)
        timed(fn, state, inputs, start, np.int32(k))
        out["chunked"] = statistics.median(k / timed(fn, state, inputs, start, np.int32(k)) for _ in range(repeats))
        if S <= whole_max and S / out["chunked"] <= whole_s:
            n = max(1, min(repeats, int(whole_s / 4 / (S / out["chunked"]))))     # short epochs: several calls
            out["whole"] = statistics.median(S / timed(fn, state, inputs, np.int32(0), np.int32(S))
                                             for _ in range(n))
        elif S <= whole_max:
            out["whole_skipped"] = f"about {S / out['chunked']:.0f} s per epoch"
        return out
    if S <= whole_max:
        fn = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None))).lower(state, inputs).compile()
        first = timed(fn, state, inputs)
        n = max(1, min(repeats, int(whole_s / 4 / first)))
        out["whole"] = statistics.median(S / timed(fn, state, inputs) for _ in range(n))
        out["whole_is"] = "train_epoch"
    return out


def run_worker(tree: Path, overrides: list[str], args) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(tree), "--updates", str(args.updates),
           "--repeats", str(args.repeats), "--whole-max", str(args.whole_max), "--whole-s", str(args.whole_s),
           "--", *overrides]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": args.cache}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", default=None, help="name=path of a checkout (repeat); "
                    "default: new=. (this checkout)")
    ap.add_argument("--lengths", default="2000,20000,150000,2000000", help="task.length values (steps)")
    ap.add_argument("--old-max", type=int, default=150000, help="longest task.length of the other trees")
    ap.add_argument("--estimators", default="tbptt,snap1")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--updates", type=int, default=400, help="updates per timed chunk")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--whole-max", type=int, default=15000, help="time whole epochs up to this many updates")
    ap.add_argument("--whole-s", type=float, default=60.0,
                    help="and only where the chunked rate says an epoch takes at most this many seconds")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(Path(args.worker).resolve(), args.overrides, args.updates, args.repeats,
                                args.whole_max, args.whole_s)))
        return
    trees = [t.split("=", 1) for t in (args.tree or ["new=."])]
    trees = [(name, Path(path).resolve()) for name, path in trees]
    lengths = [int(x) for x in args.lengths.split(",")]
    variants = []
    for est in args.estimators.split(","):
        for i, (name, path) in enumerate(trees):
            if est != "tbptt" and not (path / "jaxdl" / "train" / "online_trainer.py").exists():
                continue
            for L in lengths:
                if i and L > args.old_max:
                    continue
                ov = BASE + [f"task.length={L}", f"estimator={est}"]
                ov += ["estimator.every=10"] if est != "tbptt" else []
                if not (path / "conf" / "estimator").is_dir():
                    ov = [o for o in ov if not o.startswith("estimator")]
                variants.append((est, name, L, path, ov))
    results: dict = {v[:3]: [] for v in variants}
    with tempfile.TemporaryDirectory() as cache:
        args.cache = cache
        for r in range(args.rounds):
            for est, name, L, path, ov in variants:
                res = run_worker(path, ov, args)
                results[est, name, L].append(res)
                print(f"round {r + 1} {est} {name} length {L}: {res}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"load average {load:.1f}; {args.rounds} rounds, interleaved; updates/s of one member "
          f"(median over rounds), ratio to the same tree and path at task.length={lengths[0]}")
    print("| estimator | checkout | task.length (updates/epoch) | chunked | ratio | whole epoch | ratio |")
    print("|---|---|---|---|---|---|---|")
    base: dict = {}
    for (est, name, L), rs in results.items():
        ok = [x for x in rs if "error" not in x]
        if not ok:
            print(f"| {est} | {name} | {L:,} | error: {rs[0]['error'][:80]} | | | |")
            continue
        cells = []
        for path in ("chunked", "whole"):
            vals = [x[path] for x in ok if path in x]
            if not vals:
                skipped = next((x[f"{path}_skipped"] for x in ok if f"{path}_skipped" in x), None)
                cells += [f"not timed ({skipped})" if skipped else "-", "-"]
                continue
            med = statistics.median(vals)
            b = base.setdefault((est, name, path), med)
            tag = " (train_epoch)" if path == "whole" and ok[0].get("whole_is") else ""
            cells += [f"{med:.0f}{tag}", f"{med / b:.2f}"]
        print(f"| {est} | {name} | {L:,} ({ok[0]['updates_per_epoch']:,}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
