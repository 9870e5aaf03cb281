"""Member-updates per second against devices, along the mesh's `data` and `replica` axes.

    ./launch.sh py experiments/bench_scaling.py                    # forced CPU devices: 1, 2, 4, 8
    ./launch.sh py experiments/bench_scaling.py --platform gpu     # this machine's GPUs: 1, 2, 4, ... all

The default job's model (echo, one-layer LSTM, hidden 64, TBPTT(10, 20), 2,000 steps) trains
through jaxdl's own loop (train_loop with a jaxdl.run.mesh.Placement), one point per fresh
process (XLA_FLAGS must be set before JAX starts):

  data     one fixed global batch of --streams streams split over d devices (mesh 1 x d):
           the same work per update, so real devices make each update faster;
  replica  --members-per-device members on each of r devices (mesh r x 1): r times the
           members, so real devices train more members in the same time.

Each point reports member-updates per second over the timed epochs (the epoch that
compiles is not timed), its ratio to the 1-device point of the same run, the collectives
XLA put into the compiled epoch, and the largest relative difference of the members' train
loss from the 1-device run after the first and the last epoch.
Forced CPU devices all share this machine's cores, so on the CPU the table shows
correctness and overhead, not speed-up; on several GPUs it shows the scaling.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def worker(a) -> dict:
    import jax

    from jaxdl.config.schema import OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.run.mesh import COLLECTIVES, Placement, loop_collectives, make_mesh
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.loop import LoopPlan, MemoryRecorder, init_members, train_loop
    from jaxdl.train.tbptt_trainer import tbptt_trainer

    if jax.device_count() < a.devices:
        raise SystemExit(f"{a.devices} devices asked for, {jax.device_count()} found: {jax.devices()}")
    shape = (1, a.devices) if a.axis == "data" else (a.devices, 1)
    members = a.members if a.axis == "data" else a.members_per_device * a.devices
    task = echo(EchoConfig(lag=8, length=a.length, streams=a.streams, test_length=200, val_length=0), 0)
    trainer = tbptt_trainer(task, RecurrentConfig(hidden=a.hidden), OptimConfig(), TBPTTConfig(k1=10, k2=20),
                            TrainConfig())
    placement = Placement(make_mesh(*shape)) if a.devices > 1 else None

    rec = MemoryRecorder()
    t0 = time.perf_counter()
    res = train_loop(trainer, rec, LoopPlan(a.epochs, members=members, eval_every=a.epochs),
                     placement=placement)
    total = time.perf_counter() - t0
    # per epoch: every member's train loss
    losses = [[r["train/loss"] for r in e["members"]] or [e["row"]["train/loss"]] for e in rec.logged]
    collectives = {}
    if placement is not None:      # what XLA inserted into the compiled epoch
        state = placement.state(init_members(trainer, 0, members))
        inputs = placement.inputs(trainer.epoch_inputs(0), trainer.data_axes)
        hlo = placement.jit_epoch(jax.vmap(trainer.train_epoch, in_axes=(0, None))).lower(state, inputs)
        where = loop_collectives(hlo.compile().as_text())
        collectives = {f"{op} ({place})": where[place][op] for place in ("loops", "outside") for op in COLLECTIVES}
    return {"axis": a.axis, "devices": a.devices, "mesh": list(shape), "members": members, "streams": a.streams,
            "updates_per_epoch": trainer.updates_per_epoch, "member_updates_per_s": res.updates_per_s,
            "epoch_s": res.epoch_time_s, "total_s": total, "collectives": collectives,
            "train_loss": losses,
            "platform": jax.devices()[0].platform, "device_kind": jax.devices()[0].device_kind,
            "jax": jax.__version__}


def run_point(a, axis: str, devices: int) -> dict:
    env = dict(os.environ)
    # the worker imports this checkout's jaxdl (not an installed copy)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH", "")] if p])
    if a.platform == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    args = [sys.executable, __file__, "--worker", "--axis", axis, "--devices", str(devices),
            "--streams", str(a.streams), "--members", str(a.members), "--members-per-device", str(a.members_per_device),
            "--hidden", str(a.hidden), "--length", str(a.length), "--epochs", str(a.epochs)]
    p = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{axis} x {devices} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def device_counts(a) -> list[int]:
    if a.counts:
        return [int(c) for c in a.counts.split(",")]
    if a.platform == "cpu":
        return [1, 2, 4, 8]
    import jax                      # this process only lists the GPUs; each point runs in its own
    n = jax.device_count()
    return [c for c in (1, 2, 4, 8, 16, 32, 64) if c <= n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--platform", choices=("cpu", "gpu"), default="cpu",
                    help="cpu: forced host devices (XLA_FLAGS); gpu: the machine's GPUs")
    ap.add_argument("--counts", default="", help="device counts, e.g. 1,2,4 (default: 1,2,4,8 or the GPUs)")
    ap.add_argument("--axes", default="data,replica")
    ap.add_argument("--streams", type=int, default=32, help="global B of the data axis (and per member on replica)")
    ap.add_argument("--members", type=int, default=1, help="members on the data axis")
    ap.add_argument("--members-per-device", type=int, default=2, help="members per device on the replica axis")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--length", type=int, default=2000, help="stream length (updates per epoch = length / 10)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per point; the first compiles and is not timed")
    ap.add_argument("--rounds", type=int, default=1,
                    help="interleaved rounds over the counts; each point reports its median (a loaded machine)")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--axis", default="data")
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--json", default="", help="also write the points to this file")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a)))
        return

    counts = device_counts(a)
    points = []
    for axis in a.axes.split(","):
        runs = {n: [] for n in counts}
        for _ in range(a.rounds):          # interleaved: every count once per round (a loaded machine drifts)
            for n in counts:
                runs[n].append(run_point(a, axis, n))
        base = None
        for n in counts:
            rates = [r["member_updates_per_s"] for r in runs[n]]
            pt = dict(runs[n][0], member_updates_per_s=float(np.median(rates)), per_round=rates)
            if base is None:
                base = pt
            ref = np.asarray(base["train_loss"])                   # [epochs, members]
            got = np.asarray(pt["train_loss"])[:, : ref.shape[1]]  # member r is the same seed at every size
            rel = np.max(np.abs(got - ref) / np.abs(ref), axis=1)
            pt["ratio"] = pt["member_updates_per_s"] / base["member_updates_per_s"]
            pt["rel_diff_first"], pt["rel_diff_last"] = float(rel[0]), float(rel[-1])
            points.append(pt)
            print(f"  {axis:7s} devices={n:2d}: {pt['member_updates_per_s']:9.1f} member-updates/s "
                  f"({pt['ratio']:.2f}x; rounds {' '.join(f'{r:.0f}' for r in rates)})", file=sys.stderr, flush=True)

    first = points[0]
    cores = os.cpu_count()
    print(f"\n## Scaling along the mesh axes ({first['platform']}: {first['device_kind']}, JAX {first['jax']}, "
          f"{cores} CPU cores)\n")
    print(f"echo, LSTM hidden {a.hidden}, TBPTT(10, 20), {first['updates_per_epoch']} updates per epoch, "
          f"{a.epochs} epochs per point (the first not timed), median of {a.rounds} interleaved round(s); "
          f"ratios against 1 device in this run; load average {os.getloadavg()[0]:.1f}.\n")
    print("| axis | devices | mesh (replica x data) | members | streams per device | member-updates/s | per round "
          "| ratio | collectives in the epoch (inside its loops / outside) "
          "| train loss vs 1 device: epoch 1 | last epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for p in points:
        coll = ", ".join(f"{k} {v}" for k, v in p["collectives"].items() if v) or "none"
        print(f"| {p['axis']} | {p['devices']} | {p['mesh'][0]} x {p['mesh'][1]} | {p['members']} "
              f"| {p['streams'] // p['mesh'][1]} | {p['member_updates_per_s']:.1f} "
              f"| {' '.join(f'{r:.0f}' for r in p['per_round'])} | {p['ratio']:.2f}x | {coll} "
              f"| {p['rel_diff_first']:.1e} | {p['rel_diff_last']:.1e} |")
    if first["platform"] == "cpu":
        print(f"\nForced CPU devices (--xla_force_host_platform_device_count) share the same {cores} cores: "
              "this table shows that results do not depend on the layout and what the layout costs, not a "
              "speed-up. Run it with --platform gpu on a machine with several GPUs for the scaling.")
    print("The loss columns are the largest relative difference over members: splitting the streams changes "
          "the order of the sums over them (last bits), and training amplifies such differences epoch after "
          "epoch as it would any change of summation order.")
    if a.json:
        Path(a.json).write_text(json.dumps(points, indent=2))


if __name__ == "__main__":
    main()
