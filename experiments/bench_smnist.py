"""Sequential MNIST in jaxdl against plain PyTorch (nn.LSTM, the way a PyTorch user writes
it), each run a fresh process, the two interleaved round by round so machine noise falls on
both alike. Reports seconds per training epoch (the first epoch, which compiles / warms up,
is not timed; jaxdl's compile time is reported beside), and the test accuracy both reached
after the same epochs.

    # the row-order CPU recipe (conf/experiment/smnist_row_cpu.yaml: batch 16, Adam 1e-3), full MNIST
    ./launch.sh bench experiments/bench_smnist.py --order row --epochs 10 --rounds 2 --data 2
    # the same at another batch (both sides), on a slice
    ./launch.sh bench experiments/bench_smnist.py --order row --limit 6400 --batch 128 --data 2
    # pixel order, 100 units, batch 64, full BPTT over 784 steps, on a bounded slice
    nice -n 19 ./launch.sh bench experiments/bench_smnist.py --order pixel --limit 640 --epochs 2 --rounds 2

Both sides: the same images (jaxdl.data.images.mnist: train = the first 55,000 or `limit`,
test = the 10,000 or `limit`), the same size, Adam at the same rate, global-norm clipping at
the same value, a batch of B sequences reshuffled every epoch, a readout of the last step's
h and softmax cross-entropy; PyTorch on --threads threads (2: the cores; XLA's CPU client
uses the cores). Initialisation is each library's own (PyTorch: U(-1/sqrt(H), 1/sqrt(H)), forget
bias 0; jaxdl: docs/cells.md, forget bias 1). `--dtype bfloat16` runs both with bf16 products
and float32 weights, state and optimizer: jaxdl `model.dtype=bfloat16`, PyTorch the forward
under `torch.autocast("cpu", torch.bfloat16)` (like against like; never one side alone).
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
SIZES = {"row": {"hidden": 128, "batch": 16, "lr": 0.001, "clip": 1.0},
         "pixel": {"hidden": 100, "batch": 64, "lr": 0.001, "clip": 1.0}}


def one_core_env(env: dict) -> dict:
    """XLA on one thread (its CPU client and its Eigen pool), for --one-core."""
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return {**env, "XLA_FLAGS": f"{env.get('XLA_FLAGS', '')} {flags}".strip()}


def pin_first_core() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def jaxdl_run(order: str, epochs: int, limit: int, seed: int, run_dir: Path, one_core: bool = False,
              data: int = 1, dtype: str = "float32") -> dict:
    """`python -m jaxdl.main` with the recipe's settings -> seconds per timed epoch, compile, accuracy."""
    s = SIZES[order]
    T = 28 if order == "row" else 784
    overrides = ["task=smnist", f"task.order={order}", f"task.batch={s['batch']}", f"task.limit={limit}",
                 f"model.hidden={s['hidden']}", "optim=adam", f"optim.lr={s['lr']}", f"optim.clip={s['clip']}",
                 f"tbptt.k1={T}", f"tbptt.k2={T}", f"train.epochs={epochs}", f"seed={seed}", "train.chunk_s=null",
                 f"mesh.data={data}", f"model.dtype={dtype}", "train.checkpoint_every=1000", "train.progress=false",
                 "logger.mode=disabled",
                 f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", *overrides], cwd=ROOT,
                       env=one_core_env(env) if one_core else env, preexec_fn=pin_first_core if one_core else None,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"jaxdl failed:\n{p.stderr[-3000:]}")
    summ = json.loads((run_dir / "summary.json").read_text())
    per_epoch = summ["epoch_time_s"]
    return {"epoch_s": per_epoch, "compile_s": summ["wall_time_s"] - epochs * per_epoch,
            "test_accuracy": summ["final"]["test/accuracy"], "updates_per_epoch": summ["updates_per_epoch"]}


def torch_worker(order: str, epochs: int, limit: int, seed: int, threads: int, dtype: str = "float32") -> dict:
    """The PyTorch peer, in this (fresh) process; dtype=bfloat16: the forward under
    torch.autocast("cpu", bfloat16) (bf16 products, float32 weights and optimizer)."""
    import contextlib

    import numpy as np
    import torch
    from torch import nn

    from jaxdl.data.images import mnist
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    s = SIZES[order]
    T, D = (28, 28) if order == "row" else (784, 1)
    data_dir = os.environ.get("JAXDL_DATA", str(ROOT / "data"))
    x_tr, y_tr, x_te, y_te = mnist("idx", None, data_dir, 0)
    n = limit or 55000
    m = limit or len(x_te)
    x_tr, y_tr = torch.tensor(x_tr[:n].reshape(-1, T, D)), torch.tensor(y_tr[:n], dtype=torch.long)
    x_te, y_te = torch.tensor(x_te[:m].reshape(-1, T, D)), torch.tensor(y_te[:m], dtype=torch.long)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(D, s["hidden"], batch_first=True)
            self.out = nn.Linear(s["hidden"], 10)

        def forward(self, x):
            h, _ = self.lstm(x)
            return self.out(h[:, -1])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=s["lr"])
    gen = torch.Generator().manual_seed(seed)
    times = []
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if dtype == "bfloat16" else contextlib.nullcontext
    for _ in range(epochs):
        t0 = time.perf_counter()
        net.train()
        for idx in torch.randperm(len(x_tr), generator=gen).split(s["batch"]):
            opt.zero_grad()
            with cast():
                loss = nn.functional.cross_entropy(net(x_tr[idx]).float(), y_tr[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), s["clip"])
            opt.step()
        times.append(time.perf_counter() - t0)
    net.eval()
    with torch.no_grad(), cast():
        correct = sum(int((net(x_te[i:i + 500]).argmax(-1) == y_te[i:i + 500]).sum()) for i in range(0, m, 500))
    timed = times[1:] or times
    return {"epoch_s": float(np.mean(timed)), "first_epoch_s": times[0], "test_accuracy": correct / m,
            "updates_per_epoch": -(-len(x_tr) // s["batch"])}


def torch_run(order: str, epochs: int, limit: int, seed: int, threads: int, one_core: bool = False,
              dtype: str = "float32") -> dict:
    p = subprocess.run([sys.executable, __file__, "--worker", "--order", order, "--epochs", str(epochs),
                        "--dtype", dtype, "--batch", str(SIZES[order]["batch"]),
                        "--limit", str(limit), "--seed", str(seed), "--threads", str(1 if one_core else threads)],
                       cwd=ROOT, preexec_fn=pin_first_core if one_core else None, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"torch failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--order", choices=("row", "pixel"), default="row")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not timed)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help=">0: the first `limit` training and test images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch's intra-op threads (torch.set_num_threads)")
    ap.add_argument("--one-core", action="store_true",
                    help="both peers on one thread, pinned to the same core (XLA's flags, torch.set_num_threads(1))")
    ap.add_argument("--data", type=int, default=1,
                    help="jaxdl's mesh.data: the batch split over that many devices (-1: one per core)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="the products' inputs on both sides: jaxdl model.dtype, PyTorch torch.autocast")
    ap.add_argument("--batch", type=int, default=0, help=">0: images per update on both sides (default: the size's)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.batch:
        SIZES[args.order] = {**SIZES[args.order], "batch": args.batch}
    if args.worker:
        print(json.dumps(torch_worker(args.order, args.epochs, args.limit, args.seed, args.threads, args.dtype)))
        return
    rows = {"jaxdl": [], "pytorch": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rows["jaxdl"].append(jaxdl_run(args.order, args.epochs, args.limit, args.seed, Path(tmp) / f"j{r}",
                                           args.one_core, args.data, args.dtype))
            print(f"round {r + 1}: jaxdl   {rows['jaxdl'][-1]} (load {os.getloadavg()[0]:.1f})", flush=True)
            rows["pytorch"].append(torch_run(args.order, args.epochs, args.limit, args.seed, args.threads,
                                            args.one_core, args.dtype))
            print(f"round {r + 1}: pytorch {rows['pytorch'][-1]} (load {os.getloadavg()[0]:.1f})", flush=True)
    med = {k: statistics.median(x["epoch_s"] for x in v) for k, v in rows.items()}
    acc = {k: statistics.median(x["test_accuracy"] for x in v) for k, v in rows.items()}
    s = SIZES[args.order]
    threads = "one core each" if args.one_core else f"torch threads {args.threads}, jaxdl mesh.data={args.data}"
    print(f"\nsmnist order={args.order}, hidden {s['hidden']}, batch {s['batch']}, Adam {s['lr']}, clip {s['clip']}, "
          f"full BPTT, {args.dtype} products; {threads}; {args.epochs} epochs per run, "
          f"{args.rounds} rounds interleaved, "
          f"limit {args.limit or 'none'}; "
          f"load average {os.getloadavg()[0]:.1f}")
    ups = rows["jaxdl"][0]["updates_per_epoch"]
    print(f"{'':8s} {'s/epoch (median)':>16s} {'s/batch':>8s} {'test acc':>9s}")
    for k in rows:
        print(f"{k:8s} {med[k]:16.2f} {med[k] / ups:8.4f} {acc[k]:9.4f}")
    print(f"jaxdl / pytorch seconds per epoch: {med['jaxdl'] / med['pytorch']:.2f}x; jaxdl compile "
          f"{statistics.median(x['compile_s'] for x in rows['jaxdl']):.1f} s (excluded); "
          f"accuracy difference {100 * (acc['jaxdl'] - acc['pytorch']):+.2f} points")


if __name__ == "__main__":
    main()
