"""The source text's small datasets: truth tables (chapter 1) and salary by years worked
(chapter 2), plus the image tasks of chapter 3 (digits, MNIST), as ArrayTasks. What the
seed prints after training (weights, the truth table, salary predictions) is each
task's `after`."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.classic import linear_unit, perceptron
from jaxdl.config.fields import setting
from jaxdl.data import images
from jaxdl.data.prepared import ArrayTask
from jaxdl.tasks.registry import Task

# The source text's sample order: [1,1], [0,0], [1,0], [0,1]
TRUTH_INPUTS = np.array([[1, 1], [0, 0], [1, 0], [0, 1]], np.float32)
TRUTH_LABELS = {"and": [1, 0, 0, 0], "or": [1, 0, 1, 1], "xor": [0, 0, 1, 1]}


def truth_table(op: str):
    """-> (x [4, 2], t [4]) in the source text's order."""
    return TRUTH_INPUTS, np.array(TRUTH_LABELS[op], np.float32)


def _member0(state):
    return jax.tree.map(lambda a: a[0], state["params"])


def _truth_task(op: str) -> ArrayTask:
    x, t = truth_table(op)

    def after(state, run_dir):
        params = _member0(state)
        print(f"weights\t:{np.asarray(params['w']).tolist()}\nbias\t:{float(params['b']):f}")
        for xi in x:
            print(f"{int(xi[0])} {op} {int(xi[1])} = {int(perceptron.predict(params, jnp.asarray(xi)))}")
        acc = float((np.asarray(perceptron.predict(params, jnp.asarray(x))) == t).mean())
        if acc < 1.0:
            print(f"[jaxdl] {op}: final accuracy {acc:.2f} < 1.0 - {op.upper()} is not linearly separable: no line "
                  "w.x + b = 0 puts (0,1), (1,0) on one side and (0,0), (1,1) on the other, so the perceptron "
                  f"rule cannot converge; it needs a hidden layer (task={op} cannot be learned by model=perceptron).")
        else:
            print(f"[jaxdl] {op}: learned the truth table exactly (accuracy 1.0)")
        return {"weights": np.asarray(params["w"]).tolist(), "bias": float(params["b"])}

    return ArrayTask(op, {"train": (x, t)}, "train/accuracy", 0.5, "a constant answer gets 2 of 4 right",
                     after=after, trainer="perceptron")


@dataclass(frozen=True)
class TruthTableConfig:
    """task=and | or | xor: the four rows of a truth table (no settings)."""
    name: str = "and"


@dataclass(frozen=True)
class SalaryConfig:
    """task=salary: the source text's five people (no settings)."""
    name: str = "salary"


@dataclass(frozen=True)
class DigitsConfig:
    name: str = "digits"
    test_fraction: float = setting(0.25, gt=0, lt=1)
    val_size: int = setting(135, ge=0, doc="the last training images")


@dataclass(frozen=True)
class MnistConfig:
    name: str = "mnist"
    source: str = setting("idx", choices=("idx", "tfds"))
    path: str = setting("", doc="a folder with the four IDX files (default: <data_dir>/mnist)")
    val_size: int = setting(5000, ge=0, doc="the last training images")
    limit: int = setting(0, ge=0, doc=">0: only the first `limit` training and test images")


def truth_task(cfg: TruthTableConfig, seed: int) -> ArrayTask:
    return _truth_task(cfg.name)


def salary(seed: int = 0):
    """The source text's five people: years worked -> monthly salary: (x [5, 1], y [5])."""
    return (np.array([[5], [3], [8], [1.4], [10.1]], np.float32),
            np.array([5500, 2300, 7600, 1800, 11400], np.float32))


def salary_task(cfg: SalaryConfig, seed: int) -> ArrayTask:
    """The linear unit's task: fit salary(), then predict four more people."""
    x, y = salary()
    var = float(((y - y.mean()) ** 2).mean())

    def after(state, run_dir):
        params = _member0(state)
        print(f"weights\t:{np.asarray(params['w']).tolist()}\nbias\t:{float(params['b']):f}")
        preds = {}
        for years in (3.4, 15, 1.5, 6.3):
            preds[years] = float(linear_unit.predict(params, jnp.asarray([years], jnp.float32)))
            print(f"Work {years} years, monthly salary = {preds[years]:.2f}")
        _plot_line(x[:, 0], y, params, run_dir / "salary_fit.png")
        ls = linear_unit.least_squares(jnp.asarray(x), jnp.asarray(y))
        return {"weights": np.asarray(params["w"]).tolist(), "bias": float(params["b"]),
                "predictions": {str(k): v for k, v in preds.items()},
                "least_squares": {"w": np.asarray(ls["w"]).tolist(), "b": float(ls["b"])}}

    return ArrayTask("salary", {"train": (x, y)}, "train/mse", var,
                     f"predicting the mean salary gives MSE {var:.0f}", higher_is_better=False,
                     after=after, trainer="linear")


def _plot_line(x, y, params, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(x, y, label="data", color="tab:blue")
    xs = np.linspace(0, max(x.max(), 15), 50)
    ax.plot(xs, float(params["w"][0]) * xs + float(params["b"]), color="tab:red", label="linear unit")
    ax.set_xlabel("years worked")
    ax.set_ylabel("monthly salary")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _image_task(name, x_tr, y_tr, x_te, y_te, val_size: int) -> ArrayTask:
    """The last `val_size` training images are the validation split."""
    if not 0 <= val_size < len(x_tr):
        raise ValueError(f"task.val_size must be in 0..{len(x_tr) - 1}, got {val_size}")
    k = len(x_tr) - val_size
    data = {"train": (x_tr[:k], y_tr[:k]), "test": (x_te, y_te)}
    if val_size:
        data = {"train": data["train"], "val": (x_tr[k:], y_tr[k:]), "test": data["test"]}
    classes = int(max(y_tr.max(), y_te.max())) + 1
    return ArrayTask(name, data, "test/accuracy", 1.0 / classes, f"chance = 1/{classes} = {1 / classes:.3f}")


def digits(cfg: DigitsConfig, seed: int):
    return _image_task("digits", *images.digits(cfg.test_fraction, seed), cfg.val_size)


def mnist(cfg: MnistConfig, seed: int, data_dir: str = ""):
    """The last `val_size` of the 60,000 training images are the val split (the usual
    55,000 / 5,000 split); `limit` > 0 trains on the first `limit` of the others and
    tests on the first `limit` test images."""
    source, path, limit, val_size = cfg.source, cfg.path, cfg.limit, cfg.val_size
    x_tr, y_tr, x_te, y_te = images.mnist(source, path or None, data_dir or None, 0)
    if not 0 <= val_size < len(x_tr):
        raise ValueError(f"task.val_size must be in 0..{len(x_tr) - 1}, got {val_size}")
    k = len(x_tr) - val_size
    n = min(limit, k) if limit else k
    m = limit or len(x_te)
    return _image_task("mnist", np.concatenate([x_tr[:n], x_tr[k:]]), np.concatenate([y_tr[:n], y_tr[k:]]),
                       x_te[:m], y_te[:m], val_size)


TASKS = (Task("and", truth_task, TruthTableConfig, "perceptron"),
         Task("or", truth_task, TruthTableConfig, "perceptron"),
         Task("xor", truth_task, TruthTableConfig, "perceptron"),
         Task("salary", salary_task, SalaryConfig, "linear"),
         Task("digits", digits, DigitsConfig, "classify"),
         Task("mnist", mnist, MnistConfig, "classify", ("data_dir",)))
