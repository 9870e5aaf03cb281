"""One run of a task from a typed Config: build the task, make its trainer, train
through the one loop (jaxdl.train.loop), let the task finish its own work (`after`),
write summary.json and print the closing lines."""
from __future__ import annotations

import jax
import numpy as np

from jaxdl.config.schema import Config
from jaxdl.run import budget
from jaxdl.run.context import RunContext
from jaxdl.run.mesh import cpu_threads_running, placement_for
from jaxdl.objectives import HIGHER_IS_BETTER
from jaxdl.run.metrics import final_and_best
from jaxdl.run.verdict import chance_report
from jaxdl.tasks import build, get_task
from jaxdl.search import cache as search_cache, draw, summary as search_summary
from jaxdl.search.run import SearchRun
from jaxdl.train import population
from jaxdl.train.loop import Chunking, LoopPlan, Progress, Trainer, train_loop


def _stream(task, config: Config, injectable: bool) -> tuple[Trainer, dict]:
    """SeqTask: TBPTT(k1, k2) (jaxdl.train.tbptt_trainer), or an online estimator
    (jaxdl.train.online_trainer) when estimator= is not tbptt."""
    m, tb = config.model, config.tbptt
    reset = task.reset or tb.reset
    if config.estimator.name != "tbptt":
        from jaxdl.train.online_trainer import online_trainer
        from jaxdl.optimizers import optimizers
        t = online_trainer(task, m, optimizers(config.optim, injectable), config.estimator, config.seed,
                           reset=reset, shuffle=config.train.shuffle)
        how = f"{config.estimator.name.upper()}(every={config.estimator.every})"
        return t, {"estimator": config.estimator.name, "reset": reset, "updates_per_epoch": t.updates_per_epoch,
                   "about": f"{how}, {m.name}, hidden={m.hidden}", "desc": f"{task.name} {how}"}
    from jaxdl.train.tbptt_trainer import tbptt_trainer
    t = tbptt_trainer(task, m, config.optim, tb, config.train, config.seed, injectable)
    return t, {"tbptt": {"k1": tb.k1, "k2": tb.k2, "reset": reset}, "estimator": "tbptt",
               "updates_per_epoch": t.updates_per_epoch,
               "about": f"TBPTT(k1={tb.k1}, k2={tb.k2}), {m.name}, hidden={m.hidden}",
               "desc": f"{task.name} TBPTT({tb.k1},{tb.k2})"}


def _workflow(task, config: Config, injectable: bool) -> tuple[Trainer, dict]:
    """WorkflowTask: its compiled Keras-style model's own trainer."""
    c, (x, y, mask) = task.model, task.train
    splits = {name: c.split(xs, ys, task.batch_size, ms, extra) for name, (xs, ys, ms, extra) in task.splits.items()}
    t = c.trainer(x, y, batch_size=task.batch_size, shuffle=task.shuffle and config.train.shuffle
                  and not c.model.stateful, mask=mask, seed=config.seed, splits=splits, score=task.score)
    return t, {"updates_per_epoch": t.updates_per_epoch, "about": f"{config.model.name}, hidden={config.model.hidden}",
               "desc": task.name}


def _classify(task, config: Config, injectable: bool) -> tuple[Trainer, dict]:
    """ArrayTask: the feed-forward classifier."""
    from jaxdl.classic.classifier_trainer import classifier_sizes, classifier_trainer
    sizes = classifier_sizes(task.data, config.model)
    t = classifier_trainer(task.data, config.model, config.optim, config.train, config.seed, injectable)
    return t, {"sizes": sizes, "updates_per_epoch": t.updates_per_epoch, "about": "-".join(map(str, sizes)),
               "desc": task.name}


def _rule(task, config: Config, injectable: bool) -> tuple[Trainer, dict]:
    """ArrayTask: the perceptron or the linear unit's own rule."""
    from jaxdl.classic.rule_trainer import rule_trainer
    m = config.model
    t = rule_trainer(task.data, m)
    return t, {"rule": getattr(m, "rule", "sgd"), "updates_per_epoch": t.updates_per_epoch,
               "about": f"{config.kind} rule, rate {m.rate}", "desc": task.name}


# a task's kind (jaxdl.tasks.registry) -> the function that makes its trainer
TRAINERS = {"stream": _stream, "workflow": _workflow, "classify": _classify, "perceptron": _rule, "linear": _rule}


def make_trainer(task, config: Config) -> tuple[Trainer, dict]:
    """The trainer of the task's kind (TRAINERS), built from the typed configs; and the
    summary facts that describe it ("about": the closing line, "desc": the progress bar)."""
    if config.kind not in TRAINERS:
        raise ValueError(f"task {task.name!r} has an unknown kind {config.kind!r}; known: {sorted(TRAINERS)}")
    # a population varies optimizer values: they become optimizer state (inject_hyperparams)
    injectable = any(k.startswith("optim.") for k in config.population)
    return TRAINERS[config.kind](task, config, injectable)


def epochs_of(config: Config) -> int:
    """The perceptron and linear unit count passes in model.iterations (the source text's)."""
    return config.model.iterations if config.kind in ("perceptron", "linear") else config.train.epochs


def monitored(task, trainer: Trainer) -> str:
    """The metric stop-on-rise watches: the headline measured on val when the task holds
    out a val split (nothing is selected on test), else the headline itself."""
    split, _, name = task.headline.partition("/")
    return f"val/{name}" if "val" in trainer.splits else task.headline


def higher_is_better(task) -> dict[str, bool]:
    """Metric name -> whether higher is better: the one table (jaxdl.objectives) plus the
    task's own headline direction."""
    return {**{k: True for k in HIGHER_IS_BETTER}, task.headline.split("/")[-1]: task.higher_is_better}


def run_task(config: Config, ctx: RunContext, records: dict | None = None, trial=None) -> dict:
    """Train config's task in ctx's run dir; returns the summary (also in summary.json).
    records: what summary.json records besides the results (the effective config, the
    provenance). trial: the run's Optuna trial (jaxdl.search.trial.StudyTrial; None: not a
    sweep trial) that gets the val headline after every evaluated epoch and may prune the run."""
    entry = get_task(config.task.name)
    if hasattr(config.task, "data_bytes"):      # refused before the arrays exist if they cannot fit
        budget.check_data(config.task.data_bytes(), "lower task.streams (or task.batch / task.train_size) or "
                          "task.length / task.test_length / task.val_length")
    task = build(entry, config.task, config.seed, config.data_dir, config.model, config.optim, config.train)
    trainer, facts = make_trainer(task, config)
    tr = config.train
    epochs = epochs_of(config)
    search = config.search
    cache = search_cache.enable() if (config.population or trial is not None) else None
    hps, replica_of = draw.members(search, tr.replicas, config.seed)
    placement = placement_for(config.mesh)      # None on one device: the loop as always
    watch = monitored(task, trainer)
    device = jax.devices()[0]
    run = ctx
    if search.schedule != "none":               # halving / pbt: rows under member ids, the schedule's hook
        run = SearchRun(ctx, search, members=len(hps), epochs=epochs, seed=config.seed, score=watch,
                        higher=task.higher_is_better)
    plan = LoopPlan(epochs, config.seed, len(hps), population.stacked(hps) if config.population else None,
                    replica_of, tr.eval_every, watch if tr.stop_on_rise else None, task.higher_is_better,
                    Chunking(tr.chunk_s, None, tr.checkpoint_every_s))
    progress = Progress(1 if ctx.progress else 0, f"{facts.pop('desc')} on {device.platform}:{device.device_kind}",
                        show=("train/loss", watch, task.headline))
    prune = trial.hook(watch, task.higher_is_better) if trial is not None else None
    res = train_loop(trainer, run, plan, placement=placement, schedule=run.schedule if run is not ctx else None,
                     progress=progress, prune=prune, ahead=run.counts_ahead() if run is not ctx else (),
                     group=run.group_size(device.platform) if run is not ctx else None)
    shapes = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), {})["params"]
    num_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes))
    about = facts.pop("about")
    final_state = res.state if jax.process_count() == 1 else placement.gather(res.state)  # readable everywhere
    done = task.after(final_state, ctx.run_dir) if task.after else {}
    extra = {"task": task.name, "headline": task.headline, "chance": task.chance, "chance_text": task.chance_text,
             "higher_is_better": task.higher_is_better, "seed": config.seed, "replicas": tr.replicas,
             "num_params": num_params, "epochs": epochs, "epochs_run": res.epochs_run,
             "stopped_early_at": res.stopped_early_at, **facts, "wall_time_s": res.wall_time_s,
             "updates_per_s": res.updates_per_s, "epoch_time_s": res.epoch_time_s,
             "mesh": {**(placement.shape if placement else {"replica": 1, "data": 1}),
                      "processes": jax.process_count(), "cpu_threads": cpu_threads_running()},
             **{k: v for k, v in done.items() if k != "final"}, **(records or {})}
    hib = higher_is_better(task)
    if config.population:
        extra["population"] = config.population
    if search.schedule != "none":
        extra["search"] = run.record(device.platform)
    if trial is not None:
        extra["trial"] = trial.record()
    if cache is not None:
        extra["compile_cache"] = cache
    recs = search_summary.records(search, ctx.metrics.read(), member_records(ctx, task, hps, replica_of, hib),
                                  task.headline, task.higher_is_better, epochs)
    summary = ctx.finish(extra, res.per_member, hib, done.get("final"))
    # per_member and member_stats hold the members the final state holds: all of them, or
    # halving's survivors (SearchRun.alive); say which
    over = list(run.alive) if run is not ctx else list(range(len(hps)))
    if "member_stats" in summary:
        summary["member_stats"] = {k: {**v, "n": len(over)} for k, v in summary["member_stats"].items()}
        summary["member_stats_over"] = {"members": over, "of": len(hps),
                                        "which": "every member" if len(over) == len(hps) else
                                        "the members that trained to the end (halving stopped the others)"}
    summary = ctx.write_summary({**{k: v for k, v in summary.items() if k not in ("final", "best")},
                                 **recs}, hib, done.get("final"))
    print(f"\n[jaxdl] {task.name}: {res.epochs_run} epochs, {about}, {num_params} params, {res.wall_time_s:.1f} s")
    if len(hps) > 1 and task.headline in summary.get("member_stats", {}):
        st = summary["member_stats"][task.headline]
        what = f"{len(hps)} members" if config.population else f"{tr.replicas} replicas"
        if len(over) != len(hps):
            what = f"the {len(over)} of {len(hps)} members that trained to the end (halving stopped the others)"
        print(f"[jaxdl] {what}: {task.headline} mean {st['mean']:.4f} +- {st['std']:.4f}")
    if config.population and getattr(ctx.logger, "member_runs", None):
        ctx.logger.member_runs(summary["members"], ctx.metrics.read())
    if config.population and summary["selection"]:
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
