"""The whole TBPTT training workload, jaxdl against PyTorch, in the same run.

Two workloads, each trained from scratch by both peers, each (peer, round) in a fresh
Python process (experiments/fresh_process.py):

  echo     the default job (`./launch.sh`): echo task, lag 8, vocab 4, 32 streams of
           2,000 steps (test: a new 2,000-step stream), LSTM 64 + Dense readout,
           TBPTT(k1=10, k2=20), Adam 1e-2, 20 epochs (200 updates an epoch).
  textgen  a char-LSTM, H=512, TBPTT(k1=k2=100), Adam 3e-3, on the first --text-chars
           characters of tiny-shakespeare ($JAXDL_DATA/tinyshakespeare/input.txt; a
           synthetic order-1 Markov text of the same size where the file is absent),
           32 contiguous streams, stateful, a few epochs.

jaxdl trains with the project's TBPTT engine (jaxdl.train.tbptt.make_tbptt, one jitted
`lax.scan` per epoch) and models (jaxdl.models.rnn), XLA:CPU's thread pool sized as
./launch.sh sizes it (mesh.cpu_threads=0: one thread for echo, 64 units over 20 x 32 rows on
one device; every core for textgen or a data axis). PyTorch is written the way a PyTorch user writes
online TBPTT: the state at each window start is carried and detached, each
update re-runs its k2-step window (nn.LSTM over the window's first k1 steps, whose final
state starts the next window, then over the rest), the loss is the weighted mean over the
window's last k1 steps, then loss.backward() and torch.optim.Adam.step(). Both peers use
the same data, the same schedule (windows before the stream start begin at step 0 from the
zero state) and the same loss; their initial weights differ (each library's own init).

Printed per workload: updates/s (epochs after the first, so jaxdl's compile is not timed;
the wall time with compile is printed beside it), the ratio jaxdl / PyTorch, and the final
test metric of both (echo: accuracy, must reach ~1.0; textgen: bits per character).

    ./launch.sh bench experiments/bench_tbptt_workload.py [--workloads echo textgen] [--rounds 2]
    python experiments/bench_tbptt_workload.py --replicas 64      # on a GPU: 64 vmapped seeds

--replicas N trains N seeds at once in jaxdl (vmap, one program); the PyTorch figure is one
run's throughput, i.e. what N runs one after another give (N x the time of one).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_process import run_worker  # noqa: E402

WORKLOADS = {
    "echo": dict(lag=8, vocab=4, length=2000, streams=32, test_length=2000, hidden=64,
                 k1=10, k2=20, lr=1e-2, epochs=20),
    "textgen": dict(streams=32, hidden=512, k1=100, k2=100, lr=3e-3, epochs=3, test_fraction=0.1),
}

SMOKE = {"echo": dict(length=200, streams=4, test_length=200, hidden=16, epochs=2),
         "textgen": dict(streams=4, hidden=16, k1=20, k2=20, epochs=2)}


# ----------------------------------------------------------------------------- data (numpy only)

def echo_data(seed, lag, vocab, length, streams, test_length, **_):
    """The echo task exactly as jaxdl.tasks.synthetic.echo draws it (train, then test):
    tokens s [T, B]; targets y[t] = s[t - lag]; loss weight 0 on the first `lag` steps."""
    import numpy as np
    rng = np.random.default_rng(seed)

    def make(T):
        s = rng.integers(0, vocab, size=(T, streams))
        y = np.zeros_like(s)
        y[lag:] = s[:-lag]
        w = np.ones((T, streams), np.float32)
        w[:lag] = 0.0
        return s.astype(np.int32), y.astype(np.int32), w
    return make(length), make(test_length), vocab


def text_data(seed, chars, streams, test_fraction, **_):
    """Character ids of tiny-shakespeare (or a synthetic Markov text), cut into `streams`
    contiguous streams: (train (x, y, w), test (x, y, w), vocab, source)."""
    import numpy as np
    p = Path(os.environ.get("JAXDL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    p = p / "tinyshakespeare" / "input.txt"
    if p.exists():
        text = p.read_text(encoding="utf-8")[:chars]
        vocab = sorted(set(text))
        index = {c: i for i, c in enumerate(vocab)}
        ids = np.array([index[c] for c in text], np.int32)
        V, source = len(vocab), str(p)
    else:  # an order-1 Markov chain over 65 symbols, each followed by one of 4 likely successors
        rng = np.random.default_rng(seed)
        V = 65
        trans = np.full((V, V), 0.02 / V)
        for a in range(V):
            trans[a, rng.choice(V, 4, replace=False)] += 0.98 / 4
        trans /= trans.sum(1, keepdims=True)
        ids = np.zeros(chars, np.int32)
        u = rng.random(chars)
        cdf = trans.cumsum(1)
        for t in range(1, chars):
            ids[t] = min(np.searchsorted(cdf[ids[t - 1]], u[t]), V - 1)
        source = "synthetic order-1 Markov text (tiny-shakespeare not found)"
    n_test = int(len(ids) * test_fraction)

    def cut(a):
        T = (len(a) - 1) // streams
        x = a[: T * streams].reshape(streams, T).T
        y = a[1: T * streams + 1].reshape(streams, T).T
        return x.astype(np.int32), y.astype(np.int32), np.ones((T, streams), np.float32)
    return cut(ids[:-n_test]), cut(ids[-n_test:]), V, source


def load(workload, seed, text_chars, smoke=False):
    cfg = dict(WORKLOADS[workload])
    if smoke:
        cfg.update(SMOKE[workload])
        text_chars = min(text_chars, 4000)
    if workload == "echo":
        train, test, V = echo_data(seed, **cfg)
        source = "echo"
    else:
        train, test, V, source = text_data(seed, text_chars, **cfg)
    return cfg, train, test, V, source


def windows(T, k1, k2):
    """The updates of a stream of T steps (the engine's schedule): for update u, the window
    [a, e) to run (a = its start, clipped at 0), the step n where the next window starts (its
    state is carried), and the first step whose loss counts (u * k1)."""
    out = []
    for u in range(-(-T // k1)):
        e = min((u + 1) * k1, T)
        out.append((max(u * k1 - max(k2 - k1, 0), 0), max((u + 1) * k1 - max(k2 - k1, 0), 0), u * k1, e))
    return out


# ----------------------------------------------------------------------------- jaxdl

def jaxdl_setup(workload, seed, replicas, text_chars, dtype, remat, smoke=False):
    """jaxdl's trainer for a workload: (run_epoch (jitted, donating), (params, opt state,
    engine state), batches, evaluate (jitted), updates per epoch, data source).
    BENCH_DATA=n (--data, the jaxdl_data2 peer): the B streams split over n CPU devices (a
    data axis; XLA all-reduces the gradient sums once per update), the state replicated."""
    import jax
    data = int(os.environ.get("BENCH_DATA", 1))
    if data > 1:
        jax.config.update("jax_num_cpu_devices", data)
    import jax.numpy as jnp
    import numpy as np

    from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
    from jaxdl.objectives import get_objective
    from jaxdl.optimizers import make_optimizer
    from jaxdl.train.tbptt import Batch, make_schedule, make_tbptt

    cfg, (xs, ys, ws), (xt, yt, wt), V, source = load(workload, seed, text_chars, smoke)
    softmax_xent = get_objective("xent", ("bpc",) if workload == "textgen" else ())   # as the tasks declare
    T, B = xs.shape
    opt = make_optimizer("adam", cfg["lr"])
    kw = {"compute_dtype": dtype, "remat": remat}
    apply_fn = lambda p, x, c, m: rnn_apply(p, jax.nn.one_hot(x, V), c, m, **kw)
    eng = make_tbptt(apply_fn, softmax_xent, opt, rnn_carry, make_schedule(T, cfg["k1"], cfg["k2"]), reset="epoch")
    ones = np.ones((T, B), np.float32)
    batches = Batch(jnp.asarray(xs)[None], jnp.asarray(ys)[None], jnp.asarray(ones)[None], jnp.asarray(ws)[None])
    first = jax.tree.map(lambda a: a[0], batches)
    if data > 1:   # every [1, T, B] input split along B
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        mesh = Mesh(np.array(jax.devices()[:data]), ("data",))
        batches = jax.device_put(batches, NamedSharding(mesh, PartitionSpec(None, None, "data")))

    def init(key):
        p = rnn_init(key, V, cfg["hidden"], V)
        return p, opt.init(p), eng.fresh_state(p, first)

    def evaluate(p):
        logits, _ = rnn_apply(p, jax.nn.one_hot(jnp.asarray(xt), V), rnn_carry(p, B), **kw)
        m = softmax_xent(logits, jnp.asarray(yt))
        w = jnp.asarray(wt)
        return {k: (v * w).sum() / w.sum() for k, v in m.items()}

    run_epoch = eng.run_epoch
    if replicas > 1:
        keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.PRNGKey(seed), r))(jnp.arange(replicas))
        state = jax.jit(jax.vmap(init))(keys)
        run_epoch = jax.vmap(run_epoch, in_axes=(0, 0, 0, None))
        evaluate = jax.vmap(evaluate)
    else:
        state = jax.jit(init)(jax.random.PRNGKey(seed))
    jit_kw = {}
    if data > 1:   # as train_loop's Placement: the state replicated, each device's streams its own
        rep = NamedSharding(mesh, PartitionSpec())
        state = jax.device_put(state, rep)
        jit_kw = {"out_shardings": rep}
    return (jax.jit(run_epoch, donate_argnums=(0, 1, 2), **jit_kw), state, batches, jax.jit(evaluate),
            eng.schedule.updates, source)


def run_jaxdl(workload, epochs, seed, replicas, text_chars, dtype, remat, smoke=False):
    from jaxdl.run.mesh import ask_cpu_threads, cpu_threads_for
    cfg = {**WORKLOADS[workload], **(SMOKE[workload] if smoke else {})}
    ask_cpu_threads(cpu_threads_for(0, cfg["hidden"], int(os.environ.get("BENCH_DATA", 1)),   # the pool as
                                    cfg["k2"] * cfg["streams"]), explicit=False)               # ./launch.sh sizes it
    import jax
    import numpy as np

    run_epoch, (p, o, s), batches, evaluate, updates, source = jaxdl_setup(
        workload, seed, replicas, text_chars, dtype, remat, smoke)
    times, cpu, losses = [], [], []
    t_all = time.perf_counter()
    for _ in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        p, o, s, out = run_epoch(p, o, s, batches)
        loss = out["sums"]["loss"].sum(axis=(-2, -1)) / out["weight"].sum(axis=(-2, -1))
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        losses.append(float(np.mean(loss)))
    wall = time.perf_counter() - t_all
    m = jax.tree.map(lambda a: float(np.mean(a)), evaluate(p))
    return {"updates_per_epoch": updates, "epoch_s": times, "epoch_cpu_s": cpu, "wall_s": wall,
            "train_loss": losses, "test": m, "replicas": replicas, "source": source,
            "device": jax.devices()[0].device_kind}


# ----------------------------------------------------------------------------- PyTorch

def torch_model(V, H, lr, dev, init=None):
    """nn.LSTM(V, H) + nn.Linear(H, V) and torch.optim.Adam; `init` (jaxdl rnn params,
    one layer) copies jaxdl's weights in (tests compare the two trainers update by update)."""
    import numpy as np
    import torch
    lstm, lin = torch.nn.LSTM(V, H).to(dev), torch.nn.Linear(H, V).to(dev)
    if init is not None:
        p, r = init["layers"][0], init["readout"]
        t = lambda a: torch.from_numpy(np.array(a, np.float32)).to(dev)
        with torch.no_grad():
            lstm.weight_ih_l0.copy_(t(p.wx).T)
            lstm.weight_hh_l0.copy_(t(p.wh).T)
            lstm.bias_ih_l0.copy_(t(p.b))
            lstm.bias_hh_l0.zero_()
            lin.weight.copy_(t(r["w"]).T)
            lin.bias.copy_(t(r["b"]))
    opt = torch.optim.Adam(list(lstm.parameters()) + list(lin.parameters()), lr=lr)
    return lstm, lin, opt


def torch_epoch(lstm, lin, opt, x, y, w, k1, k2):
    """One epoch of online TBPTT(k1, k2) over x [T, B, V] (one-hot), y [T, B], w [T, B],
    from the zero state, as a PyTorch user writes it -> the per-update losses (a tensor)."""
    import torch
    import torch.nn.functional as F
    T, B, V = x.shape
    H = lstm.hidden_size
    state = (x.new_zeros(1, B, H), x.new_zeros(1, B, H))
    losses = []
    for a, n, first, e in windows(T, k1, k2):
        h0 = tuple(s.detach() for s in state)          # the window starts from a detached state
        if n > a:                                       # the window's first k1 steps ...
            out1, state = lstm(x[a:n], h0)
            out = torch.cat([out1, lstm(x[n:e], state)[0]]) if e > n else out1
        else:                                           # (a window before the stream start)
            out, _ = lstm(x[a:e], h0)
            state = h0
        logits = lin(out[first - a:])                   # ... the loss on its last k1 steps
        ww = w[first:e]
        ce = F.cross_entropy(logits.reshape(-1, V), y[first:e].reshape(-1), reduction="none")
        loss = (ce * ww.reshape(-1)).sum() / ww.sum().clamp(min=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def torch_setup(workload, seed, text_chars, smoke=False):
    """The PyTorch peer for a workload: (model (lstm, lin, opt), train tensors (x one-hot
    [T, B, V], y, w), test arrays, cfg, device, data source). Threads: BENCH_THREADS or all cores."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 0)) or os.cpu_count() or 1)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg, (xs, ys, ws), test, V, source = load(workload, seed, text_chars, smoke)
    torch.manual_seed(seed)
    model = torch_model(V, cfg["hidden"], cfg["lr"], dev)
    x = F.one_hot(torch.from_numpy(xs).long(), V).float().to(dev)      # [T, B, V]
    y = torch.from_numpy(ys).long().to(dev)
    w = torch.from_numpy(ws).to(dev)
    return model, (x, y, w), test, cfg, dev, source


def run_torch(workload, epochs, seed, replicas, text_chars, dtype, remat, smoke=False):
    import torch
    import torch.nn.functional as F

    (lstm, lin, opt), (x, y, w), (xt, yt, wt), cfg, dev, source = torch_setup(workload, seed, text_chars, smoke)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    T, V = x.shape[0], x.shape[-1]
    times, cpu, losses = [], [], []
    t_all = time.perf_counter()
    for _ in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(torch_epoch(lstm, lin, opt, x, y, w, cfg["k1"], cfg["k2"]).mean().item())
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    wall = time.perf_counter() - t_all
    with torch.no_grad():
        out, _ = lstm(F.one_hot(torch.from_numpy(xt).long(), V).float().to(dev))
        logits = lin(out)
        yy, ww = torch.from_numpy(yt).long().to(dev), torch.from_numpy(wt).to(dev)
        ce = F.cross_entropy(logits.reshape(-1, V), yy.reshape(-1), reduction="none").reshape(yy.shape)
        acc = (logits.argmax(-1) == yy).float()
        test = {"loss": float((ce * ww).sum() / ww.sum()), "accuracy": float((acc * ww).sum() / ww.sum())}
        test["bpc"] = test["loss"] / math.log(2.0)
    return {"updates_per_epoch": len(windows(T, cfg["k1"], cfg["k2"])), "epoch_s": times, "epoch_cpu_s": cpu,
            "wall_s": wall,
            "train_loss": losses, "test": test, "replicas": 1, "source": source,
            "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}


def run_jaxdl_data2(*args):
    """jaxdl with the streams split over two CPU devices (mesh.data=2), for jaxdl on one
    device and on two in one run."""
    os.environ["BENCH_DATA"] = "2"
    return run_jaxdl(*args)


def run_jaxdl_rows_left(*args):
    """jaxdl with its per-step recurrent products [B, K] x [K, N] at every size (the form
    before jaxdl.models.products.weight_left), for a before/after in one run."""
    import jaxdl.models.products as products
    products.WEIGHT_LEFT_MIN = 1 << 30
    return run_jaxdl(*args)


PEERS = {"jaxdl": run_jaxdl, "jaxdl_data2": run_jaxdl_data2, "jaxdl_rows_left": run_jaxdl_rows_left,
         "torch": run_torch}


def updates_per_s(r, key="epoch_s"):
    """Member-updates per second over the epochs after the first (the first compiles);
    key="epoch_cpu_s": per CPU-second of the process (all its threads)."""
    steady = r[key][1:] or r[key]
    return r["updates_per_epoch"] * r["replicas"] * len(steady) / sum(steady)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=["echo", "textgen"], choices=sorted(WORKLOADS))
    ap.add_argument("--peers", nargs="+", default=["jaxdl", "torch"], choices=sorted(PEERS))
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (a fresh process each)")
    ap.add_argument("--epochs", type=int, default=None, help="override every workload's epochs")
    ap.add_argument("--text-chars", type=int, default=100_000, help="textgen: characters of text")
    ap.add_argument("--replicas", type=int, default=1, help="jaxdl: seeds trained together (vmap)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="jaxdl model.dtype")
    ap.add_argument("--remat", default="none", help="jaxdl model.remat")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds (tests)")
    ap.add_argument("--threads", type=int, default=0,
                    help="pin each worker to this many cores (both peers; torch.set_num_threads too); "
                         "0: each library's default, all cores")
    ap.add_argument("--data", type=int, default=1,
                    help="jaxdl: split the streams over this many CPU devices (a data axis)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    remat = None if a.remat == "none" else a.remat
    if a.worker:
        if int(os.environ.get("BENCH_THREADS", 0)):   # before jax/torch start their thread pools
            n = int(os.environ["BENCH_THREADS"])
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:n])
            os.environ["OMP_NUM_THREADS"] = str(n)
        peer, workload = a.worker.split(":")
        cfg = {**WORKLOADS[workload], **(SMOKE[workload] if a.smoke else {})}
        r = PEERS[peer](workload, a.epochs or cfg["epochs"], a.seed, a.replicas, a.text_chars, a.dtype, remat,
                        a.smoke)
        print(json.dumps(r))
        return r
    import importlib.util
    a.peers = [p for p in a.peers if importlib.util.find_spec("jax" if p.startswith("jaxdl") else p)]
    if a.threads:   # inherited by the workers, which pin themselves to that many cores
        os.environ["BENCH_THREADS"] = str(a.threads)
    if a.data > 1:
        os.environ["BENCH_DATA"] = str(a.data)
    print(f"TBPTT workloads, {a.rounds} round(s), a fresh process per peer and round; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')} "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', 'unset')}; threads={a.threads or 'default'}; "
          f"jaxdl dtype={a.dtype} "
          f"remat={a.remat} replicas={a.replicas} data={a.data}")
    results = {}
    for wl in a.workloads:
        cfg = {**WORKLOADS[wl], **(SMOKE[wl] if a.smoke else {})}
        runs = {k: [] for k in a.peers}
        for _ in range(a.rounds):
            for peer in a.peers:
                args = ["--worker", f"{peer}:{wl}", "--seed", a.seed, "--text-chars", a.text_chars,
                        "--replicas", a.replicas, "--dtype", a.dtype, "--remat", a.remat]
                if a.epochs:
                    args += ["--epochs", a.epochs]
                if a.smoke:
                    args += ["--smoke"]
                runs[peer].append(run_worker(__file__, *args))
        metric = "accuracy" if wl == "echo" else "bpc"
        first = next(iter(runs.values()))[0]
        print(f"\n{wl}: H={cfg['hidden']} TBPTT(k1={cfg['k1']}, k2={cfg['k2']}) B={cfg['streams']} "
              f"lr={cfg['lr']} epochs={a.epochs or cfg['epochs']} ({first['updates_per_epoch']} updates each); "
              f"data: {first['source']}; device: {first['device']}")
        print(f"  {'peer':15s} {'updates/s (median)':>19s} {'per round':>22s} {'per CPU-s':>10s} "
              f"{'wall s':>8s} {'test ' + metric:>14s}")
        table = {}
        for peer, rs in runs.items():
            ups = [updates_per_s(r) for r in rs]
            table[peer] = {"updates_per_s": statistics.median(ups), "per_round": ups,
                           "updates_per_cpu_s": statistics.median(updates_per_s(r, "epoch_cpu_s") for r in rs),
                           "wall_s": statistics.median(r["wall_s"] for r in rs),
                           "test": {k: statistics.median(r["test"][k] for r in rs) for k in rs[0]["test"]},
                           "device": rs[0]["device"], "replicas": rs[0]["replicas"]}
            t = table[peer]
            print(f"  {peer:15s} {t['updates_per_s']:19.1f} {' '.join(f'{u:.0f}' for u in ups):>22s} "
                  f"{t['updates_per_cpu_s']:10.1f} {t['wall_s']:8.1f} {t['test'][metric]:14.4f}")
        if "jaxdl" in table and "torch" in table:
            ratio = table["jaxdl"]["updates_per_s"] / table["torch"]["updates_per_s"]
            table["ratio"] = ratio
            print(f"  jaxdl / PyTorch updates/s: {ratio:.2f}x" +
                  (f" (jaxdl: {a.replicas} vmapped replicas, member-updates/s; PyTorch: one run, "
                   f"so {a.replicas} runs in sequence take {a.replicas}x as long)" if a.replicas > 1 else ""))
        for peer in [p for p in table if p.startswith("jaxdl_") and "torch" in table]:
            r = table[peer]["updates_per_s"] / table["torch"]["updates_per_s"]
            table[f"ratio_{peer}"] = r
            print(f"  {peer} / PyTorch updates/s: {r:.2f}x")
        print(f"  load average now {os.getloadavg()[0]:.2f}")
        results[wl] = table
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
