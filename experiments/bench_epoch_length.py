"""Updates per second of the default job's training program against the epoch's length:
the echo default job (hidden 64, 32 streams, TBPTT(10, 20), or an online estimator with an
update every 10 steps) at task.length = 2,000 to 2,000,000 steps (200 to 200,000 updates
per epoch), in one run, for this checkout and for older commits' checkouts side by side.

    ./launch.sh py experiments/bench_epoch_length.py --rounds 2 \
        --tree new=. --tree c9cde96=/tmp/old-c9c --tree 867ff45=/tmp/old-867

One process per checkout and estimator (`--worker`) builds the job at every length from
that checkout's own conf/ and code (task.length=L), compiles the programs train_loop compiles
(jit(vmap(...)) of one member) and then times them in --rounds rounds, every length once
per round, so the machine's noise falls on all lengths alike:
  chunked  train_chunk over --updates updates in the middle of the epoch (train.chunk_s, the
           default: the loop calls this program chunk by chunk);
  whole    train_chunk over the whole epoch (train.chunk_s=null), or train_epoch where the
           checkout has no chunks (867ff45) or for the online estimators of c9cde96.
The whole epoch is timed only up to --whole-max updates per epoch, and only where the
chunked rate says it takes at most --whole-s seconds (so not c9cde96's long streams: the
table says so). The table gives each median over rounds and its ratio to the same checkout
and path at the shortest length, the median of the ratios within each round (checkouts run
one after another, so compare them by their ratios). Evaluation, checkpoints and the host
work between chunks are not included.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
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


def worker(tree: Path, overrides: list[str], lengths: list[int], args) -> dict:
    sys.path.insert(0, str(tree))                        # that checkout's jaxdl, whatever is installed
    import jax
    import numpy as np

    from jaxdl.train.loop import init_members

    def timed(fn, *a):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*a))
        return time.perf_counter() - t0

    jobs = {}
    for L in lengths:
        tr = _build(tree, overrides + [f"task.length={L}"])
        S = getattr(tr, "updates_per_epoch", None) or tr.steps_per_epoch
        state, inputs = init_members(tr, 0, 1), tr.epoch_inputs(0)
        job = {"S": S, "out": {"updates_per_epoch": S, "chunked": [], "whole": []}}
        if getattr(tr, "train_chunk", None) is not None:
            fn = jax.jit(jax.vmap(tr.train_chunk, in_axes=(0, None, None, None))).lower(
                state, inputs, np.int32(0), np.int32(1)).compile()
            k = min(args.updates, S)
            piece = (state, inputs, np.int32((S - k) // 2), np.int32(k))
            timed(fn, *piece)
            job["chunked"] = (lambda fn=fn, piece=piece, k=k: k / timed(fn, *piece))
            rate = k / timed(fn, *piece)
            if S <= args.whole_max and S / rate <= args.whole_s:
                job["whole"] = (lambda fn=fn, a=(state, inputs, np.int32(0), np.int32(S)), S=S: S / timed(fn, *a))
            elif S <= args.whole_max:
                job["out"]["whole_skipped"] = f"about {S / rate:.0f} s per epoch"
        elif S <= args.whole_max:
            fn = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None))).lower(state, inputs).compile()
            timed(fn, state, inputs)
            job["whole"] = (lambda fn=fn, a=(state, inputs), S=S: S / timed(fn, *a))
            job["out"]["whole_is"] = "train_epoch"
        jobs[L] = job
        print(f"{tree.name} {L}: compiled", file=sys.stderr, flush=True)
    for r in range(args.rounds):
        for L, job in jobs.items():
            for path in ("chunked", "whole"):
                if path in job:
                    job["out"][path].append(job[path]())
        print(f"{tree.name} round {r + 1}: " + ", ".join(
            f"{L}: {job['out']['chunked'][-1:] or job['out']['whole'][-1:]}" for L, job in jobs.items()),
            file=sys.stderr, flush=True)
    return {str(L): job["out"] for L, job in jobs.items()}


def run_worker(tree: Path, overrides: list[str], lengths: list[int], args) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(tree), "--lengths", ",".join(map(str, lengths)),
           "--rounds", str(args.rounds), "--updates", str(args.updates), "--whole-max", str(args.whole_max),
           "--whole-s", str(args.whole_s), "--", *overrides]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, cwd=tree)
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", default=None, help="name=path of a checkout (repeat); "
                    "default: new=. (this checkout)")
    ap.add_argument("--lengths", default="2000,20000,150000,2000000", help="task.length values (steps)")
    ap.add_argument("--old-max", type=int, default=150000, help="longest task.length of the other trees")
    ap.add_argument("--old-online-max", type=int, default=20000,
                    help="longest task.length of the other trees' online estimator (a whole epoch per call)")
    ap.add_argument("--estimators", default="tbptt,snap1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--updates", type=int, default=400, help="updates per timed chunk")
    ap.add_argument("--whole-max", type=int, default=15000, help="time whole epochs up to this many updates")
    ap.add_argument("--whole-s", type=float, default=60.0,
                    help="and only where the chunked rate says an epoch takes at most this many seconds")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.worker:
        print(json.dumps(worker(Path(args.worker).resolve(), args.overrides, lengths, args)))
        return
    trees = [t.split("=", 1) for t in (args.tree or ["new=."])]
    trees = [(name, Path(path).resolve()) for name, path in trees]
    rows = []
    for est in args.estimators.split(","):
        for i, (name, path) in enumerate(trees):
            if est != "tbptt" and not (path / "jaxdl" / "train" / "online_trainer.py").exists():
                continue
            ov = BASE + ([f"estimator={est}", "estimator.every=10"] if est != "tbptt" else [])
            if not (path / "conf" / "estimator").is_dir():
                ov = [o for o in ov if not o.startswith("estimator")]
            ls = [L for L in lengths if not i or L <= (args.old_max if est == "tbptt" else args.old_online_max)]
            res = run_worker(path, ov, ls, args)
            rows += [(est, name, L, res.get(str(L), res)) for L in ls]
    load = os.getloadavg()[0]
    print(f"load average {load:.1f}; updates/s of one member, median of {args.rounds} rounds (lengths interleaved "
          f"in each); ratio to the same checkout and path at task.length={lengths[0]}, median of the rounds' ratios")
    print("| estimator | checkout | task.length (updates/epoch) | chunked | ratio | whole epoch | ratio |")
    print("|---|---|---|---|---|---|---|")
    base: dict = {}
    for est, name, L, r in rows:
        if "error" in r:
            print(f"| {est} | {name} | {L:,} | {r['error']} | | | |")
            continue
        cells = []
        for path in ("chunked", "whole"):
            if not r[path]:
                skipped = r.get(f"{path}_skipped")
                cells += [f"not timed ({skipped})" if skipped else "-", "-"]
                continue
            med = statistics.median(r[path])
            b = base.setdefault((est, name, path), r[path])
            ratio = statistics.median(v / w for v, w in zip(r[path], b))    # paired within each round
            tag = " (train_epoch)" if path == "whole" and r.get("whole_is") else ""
            cells += [f"{med:.0f}{tag}", f"{ratio:.2f}"]
        print(f"| {est} | {name} | {L:,} ({r['updates_per_epoch']:,}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
