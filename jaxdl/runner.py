"""One run of a task from a validated RunSpec: build the task, make its trainer,
train through the one loop (jaxdl.train.loop), let the task finish its own work
(`after`), write summary.json and print the closing lines."""
from __future__ import annotations

import jax
import numpy as np

from jaxdl.config import RunSpec
from jaxdl.run.context import RunContext
from jaxdl.run.mesh import placement_for
from jaxdl.run.verdict import chance_report
from jaxdl.tasks import builder, call_task
from jaxdl.run.metrics import final_and_best
from jaxdl.train import population
from jaxdl.train.loop import Chunking, Trainer, train_loop


def make_trainer(task, spec: RunSpec) -> tuple[Trainer, dict]:
    """The trainer the task asks for, from the model/optim/tbptt/train config; and the
    summary facts that describe it."""
    m, o, tb, tr = spec.model.params, spec.optim, spec.tbptt, spec.train
    kind = task.trainer
    # a population varies optimizer values: they become optimizer state (inject_hyperparams)
    optimizer_values = {"weight_decay": o.get("weight_decay", 0.0),
                        "injectable": any(k.startswith("optim.") for k in spec.population)}
    if kind == "tbptt":
        from jaxdl.train.tbptt_trainer import tbptt_trainer
        t = tbptt_trainer(task, seed=spec.seed, hidden=m["hidden"], layers=m.get("layers", 1),
                          forget_bias=m.get("forget_bias", 1.0), hoist=m.get("hoist"), optimizer=o["name"],
                          lr=o["lr"], clip=o.get("clip", 0.0), k1=tb["k1"], k2=tb["k2"], reset=tb["reset"],
                          shuffle=tr.get("shuffle", True), dtype=m.get("dtype", "float32"),
                          remat=m.get("remat", "none"), **optimizer_values)
        reset = task.reset or tb["reset"]
        return t, {"tbptt": {"k1": tb["k1"], "k2": tb["k2"], "reset": reset}, "updates_per_epoch": t.steps_per_epoch,
                   "about": f"TBPTT(k1={tb['k1']}, k2={tb['k2']}), hidden={m['hidden']}",
                   "desc": f"{task.name} TBPTT({tb['k1']},{tb['k2']})"}
    if kind == "workflow":
        c, (x, y, mask) = task.model, task.train
        splits = {name: c.split(xs, ys, task.batch_size, ms, extra) for name, (xs, ys, ms, extra) in task.splits.items()}
        t = c.trainer(x, y, batch_size=task.batch_size, shuffle=task.shuffle and not c.model.stateful, mask=mask,
                      seed=spec.seed, splits=splits, score=task.score)
        return t, {"updates_per_epoch": t.steps_per_epoch, "about": f"hidden={m['hidden']}", "desc": task.name}
    if kind == "classify":
        from jaxdl.train.classifier_trainer import classifier_trainer
        x_tr, y_tr = task.data["train"]
        classes = int(max(int(np.max(y)) for _, y in task.data.values())) + 1
        sizes = [x_tr.shape[1], *m.get("hidden", [300]), classes]
        t = classifier_trainer(task.data, sizes=sizes, hidden_act=m.get("hidden_act", "sigmoid"),
                               output_act=m.get("output_act", "sigmoid"), loss=m.get("loss", "half_sse"),
                               backprop=m.get("backprop", "autodiff"), init=m.get("init", "uniform_0.1"),
                               optimizer=o["name"], lr=o["lr"], clip=o.get("clip", 0.0),
                               batch_size=tr.get("batch_size", 32), shuffle=tr.get("shuffle", True), seed=spec.seed,
                               **optimizer_values)
        return t, {"sizes": sizes, "updates_per_epoch": t.steps_per_epoch, "about": "-".join(map(str, sizes)),
                   "desc": task.name}
    if kind in ("perceptron", "linear"):
        from jaxdl.classic import perceptron
        from jaxdl.classic.trainers import rule_trainer
        act = perceptron.step if kind == "perceptron" else perceptron.identity
        t = rule_trainer(task.data, m["rate"], act, m.get("rule", "sgd"))
        return t, {"rule": m.get("rule", "sgd"), "updates_per_epoch": t.steps_per_epoch,
                   "about": f"{kind} rule, rate {m['rate']}", "desc": task.name}
    raise ValueError(f"task {task.name!r} asks for an unknown trainer {kind!r}")


def epochs_of(task, spec: RunSpec) -> int:
    """The perceptron and linear unit count passes in model.iterations (the seed's)."""
    return spec.model.params["iterations"] if task.trainer in ("perceptron", "linear") else spec.train["epochs"]


def monitored(task, trainer: Trainer) -> str:
    """The metric stop-on-rise watches: the headline measured on val when the task holds
    out a val split (nothing is selected on test), else the headline itself."""
    split, _, name = task.headline.partition("/")
    return f"val/{name}" if "val" in trainer.splits else task.headline


def run_task(spec: RunSpec, ctx: RunContext) -> dict:
    """Train spec's task in ctx's run dir; returns the summary (also in summary.json)."""
    kw = dict(spec.task_params, seed=spec.seed, hidden=spec.model.params.get("hidden"), lr=spec.optim["lr"],
              batch_size=spec.train.get("batch_size", 32), epochs=spec.train["epochs"])
    task = call_task(builder(spec.task), spec.data_dir, **kw)
    trainer, facts = make_trainer(task, spec)
    tr = spec.train
    epochs = epochs_of(task, spec)
    hps, replica_of = population.members(spec.population, tr["replicas"])
    placement = placement_for(spec.mesh)      # None on one device: the loop as always
    res = train_loop(trainer, ctx, epochs=epochs, seed=spec.seed, members=len(hps),
                     hparams=population.stacked(hps) if spec.population else None, replica_of=replica_of,
                     eval_every=tr["eval_every"], stop_on_rise=monitored(task, trainer) if tr.get("stop_on_rise") else None,
                     higher_is_better=task.higher_is_better, verbose=1 if ctx.progress else 0, desc=f"{facts.pop('desc')} on {jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
                     show=("train/loss", monitored(task, trainer), task.headline), placement=placement,
                     chunking=Chunking(tr.get("chunk_s", 2.0), None, tr.get("checkpoint_every_s")))
    shapes = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), {})["params"]
    num_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes))
    about = facts.pop("about")
    final_state = res.state if jax.process_count() == 1 else placement.gather(res.state)  # readable everywhere
    done = task.after(final_state, ctx.run_dir) if task.after else {}
    extra = {"task": task.name, "headline": task.headline, "chance": task.chance, "chance_text": task.chance_text,
             "higher_is_better": task.higher_is_better, "seed": spec.seed, "replicas": tr["replicas"],
             "num_params": num_params, "epochs": epochs, "epochs_run": res.epochs_run,
             "stopped_early_at": res.stopped_early_at, **facts, "wall_time_s": res.wall_time_s,
             "steps_per_s": res.steps_per_s, "epoch_time_s": res.epoch_time_s,
             "mesh": {**(placement.shape if placement else {"replica": 1, "data": 1}), "processes": jax.process_count()},
             **{k: v for k, v in done.items() if k != "final"}}
    hib = {task.headline.split("/")[-1]: task.higher_is_better, "accuracy": True, "exact_match": True,
           "char_accuracy": True}
    if spec.population:
        extra["population"] = spec.population
    summary = ctx.finish(extra, res.per_member, hib, done.get("final"))
    summary = ctx.write_summary({**{k: v for k, v in summary.items() if k not in ("final", "best")},
                                 **member_records(ctx, task, hps, replica_of, hib)}, hib, done.get("final"))
    print(f"\n[jaxdl] {task.name}: {res.epochs_run} epochs, {about}, {num_params} params, {res.wall_time_s:.1f} s")
    if len(hps) > 1 and task.headline in summary.get("replica_stats", {}):
        st = summary["replica_stats"][task.headline]
        what = f"{len(hps)} members" if spec.population else f"{tr['replicas']} replicas"
        print(f"[jaxdl] {what}: {task.headline} mean {st['mean']:.4f} +- {st['std']:.4f}")
    if spec.population and getattr(ctx.logger, "member_runs", None):
        ctx.logger.member_runs(summary["members"], ctx.metrics.read())
    if spec.population and summary["selection"]:
        sel = summary["selection"]
        print(f"[jaxdl] {len(hps)} members; selected on {sel['by']}: member {sel['member']} "
              f"{sel['hparams']} (replica {sel['replica']}): {sel['by']} {sel['val']:.4f}, "
              f"{task.headline} {sel['test']:.4f}")
    print(f"[jaxdl] {chance_report(summary)}")
    print(f"[jaxdl] run dir: {ctx.run_dir}")
    return summary


def member_records(ctx: RunContext, task, hps: list[dict], replica_of: list[int], hib: dict) -> dict:
    """summary.json's "members" (each member's population values, replica, final and best
    metrics, from its rows in metrics.jsonl) and "selection": the member with the best
    final headline metric on VAL, with its test value. Nothing is selected on test; without
    a val split there is no selection."""
    rows = ctx.metrics.read()
    if len(hps) > 1:
        per = [final_and_best([{k: v for k, v in r.items() if k != "member"} for r in rows if r.get("member") == i],
                              hib) for i in range(len(hps))]
    else:
        per = [final_and_best(rows, hib)]
    recs = [{"member": i, "replica": replica_of[i], "hparams": hps[i], "final": f, "best": b}
            for i, (f, b) in enumerate(per)]
    by = "val/" + task.headline.partition("/")[2]
    have = [r for r in recs if by in r["final"]]
    selection = None
    if have:
        pick = (max if task.higher_is_better else min)(have, key=lambda r: r["final"][by])
        selection = {"by": by, "member": pick["member"], "replica": pick["replica"], "hparams": pick["hparams"],
                     "val": pick["final"][by], "test": pick["final"].get(task.headline)}
    return {"members": recs, "selection": selection}
