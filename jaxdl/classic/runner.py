"""Runs the foundations tasks from a RunSpec: the perceptron on truth tables, the
linear unit on the seed's salary data, MLPs on digits / MNIST. Each leaves the
same run directory as the sequence tasks (metrics.jsonl, summary.json,
checkpoints/, wandb)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.classic import linear_unit, perceptron
from jaxdl.config import RunSpec
from jaxdl.run.context import RunContext
from jaxdl.tasks import CLASSIC_TASKS, call_task


def run_classic(spec: RunSpec, ctx: RunContext) -> dict:
    fn, kind = CLASSIC_TASKS[spec.task]
    data = call_task(fn, spec.data_dir, seed=spec.seed, **spec.task_params)
    if kind == "perceptron":
        return run_perceptron(spec.task, data, ctx, **spec.model.params)
    if kind == "linear":
        return run_linear(data, ctx, **spec.model.params)
    return run_mlp(spec, data, ctx)


def run_perceptron(op: str, data, ctx: RunContext, iterations: int = 10, rate: float = 0.1) -> dict:
    x, t = (jnp.asarray(a) for a in data)
    params, accs = jax.jit(perceptron.train, static_argnums=(3,))(perceptron.init(2), x, t, iterations, rate)
    for i, a in enumerate(np.asarray(accs)):
        ctx.log({"epoch": i + 1, "step": (i + 1) * len(x), "train/accuracy": float(a)})
    ctx.save_checkpoint(iterations, {"params": params})
    print(f"weights\t:{np.asarray(params['w']).tolist()}\nbias\t:{float(params['b']):f}")
    for xi in np.asarray(x):
        y = int(perceptron.predict(params, jnp.asarray(xi)))
        print(f"{int(xi[0])} {op} {int(xi[1])} = {y}")
    acc = float(accs[-1])
    summary = ctx.write_summary({"task": op, "num_params": 3, "headline": "train/accuracy",
                                 "weights": np.asarray(params["w"]).tolist(), "bias": float(params["b"])},
                                {"accuracy": True})
    if acc < 1.0:
        print(f"[jaxdl] {op}: final accuracy {acc:.2f} < 1.0 - {op.upper()} is not linearly separable: no line "
              "w.x + b = 0 puts (0,1), (1,0) on one side and (0,0), (1,1) on the other, so the perceptron "
              "rule cannot converge; it needs a hidden layer (task=xor cannot be learned by model=perceptron).")
    else:
        print(f"[jaxdl] {op}: learned the truth table exactly (accuracy 1.0) in {iterations} iterations")
    return summary


def run_linear(data, ctx: RunContext, rule: str = "sgd", iterations: int = 10, rate: float = 0.01) -> dict:
    x, y = (jnp.asarray(a) for a in data)
    p0 = linear_unit.init(1)
    fit = linear_unit.sgd if rule == "sgd" else linear_unit.batch_gd
    params = jax.jit(fit, static_argnums=(3,))(p0, x, y, iterations, rate)
    mse = float(((linear_unit.predict(params, x) - y) ** 2).mean())
    ctx.log({"epoch": iterations, "step": iterations * (len(x) if rule == "sgd" else 1), "train/mse": mse})
    ctx.save_checkpoint(iterations, {"params": params})
    print(f"weights\t:{np.asarray(params['w']).tolist()}\nbias\t:{float(params['b']):f}")
    preds = {}
    for years in (3.4, 15, 1.5, 6.3):
        preds[years] = float(linear_unit.predict(params, jnp.asarray([years], jnp.float32)))
        print(f"Work {years} years, monthly salary = {preds[years]:.2f}")
    _plot_line(np.asarray(x)[:, 0], np.asarray(y), params, ctx.run_dir / "salary_fit.png", rule)
    ls = linear_unit.least_squares(x, y)
    return ctx.write_summary({"task": "salary", "rule": rule, "num_params": 2,
                              "weights": np.asarray(params["w"]).tolist(), "bias": float(params["b"]),
                              "predictions": {str(k): v for k, v in preds.items()},
                              "least_squares": {"w": np.asarray(ls["w"]).tolist(), "b": float(ls["b"])}},
                             {})


def _plot_line(x, y, params, path, rule):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(x, y, label="data", color="tab:blue")
    xs = np.linspace(0, max(x.max(), 15), 50)
    ax.plot(xs, float(params["w"][0]) * xs + float(params["b"]), color="tab:red", label=f"linear unit ({rule})")
    ax.set_xlabel("years worked"); ax.set_ylabel("monthly salary"); ax.legend()
    fig.tight_layout(); fig.savefig(path, dpi=100); plt.close(fig)


def run_mlp(spec: RunSpec, data, ctx: RunContext) -> dict:
    from jaxdl.train.fit_classifier import fit_classifier
    m, o, tr = spec.model.params, spec.optim, spec.train
    x_tr, y_tr, x_te, y_te = data
    sizes = [x_tr.shape[1], *m.get("hidden", [300]), int(max(y_tr.max(), y_te.max())) + 1]
    s = fit_classifier(data, ctx, sizes=sizes, hidden_act=m.get("hidden_act", "sigmoid"),
                       output_act=m.get("output_act", "sigmoid"), loss=m.get("loss", "half_sse"),
                       backprop=m.get("backprop", "autodiff"), init=m.get("init", "uniform_0.1"),
                       optimizer=o["name"], lr=o["lr"], clip=o.get("clip", 0.0),
                       batch_size=tr.get("batch_size", 32), epochs=tr["epochs"], eval_every=tr["eval_every"],
                       stop_on_rise=tr.get("stop_on_rise", False), shuffle=tr.get("shuffle", True),
                       seed=spec.seed, replicas=tr["replicas"], name=spec.task)
    s.pop("_params", None)
    err = s["final"].get("test/error")
    print(f"\n[jaxdl] {spec.task} {'-'.join(map(str, sizes))}: test error {err:.4f} "
          f"(accuracy {1 - err:.4f}; chance error {1 - 1 / sizes[-1]:.2f}), best error "
          f"{s['best'].get('test/error', float('nan')):.4f}, {s['epochs_run']} epochs, {s['wall_time_s']:.1f} s")
    print(f"[jaxdl] run dir: {ctx.run_dir}")
    return s
