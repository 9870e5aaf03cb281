"""Sequence prediction (the source text's first sequence problem) on a real series: the
next month of airline passengers from the previous `n_in` months.

Pipeline (the toolkit's pieces): first differences -> min-max scaling to [-1, 1]
fitted on the training part -> lagged supervised windows [samples, n_in, 1] ->
LSTM -> inverse scaling -> undo the difference. The last `test_size` months are
held out and forecast one step ahead, the `val_size` months before them are the
validation split. Baselines, as the source text advises building
first: persistence (next = last) and an MLP on the same sliding windows.
Reported in the original units: test/rmse, test/rmse_persistence, test/rmse_mlp.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.config.fields import setting
from jaxdl.config.schema import OptimConfig, RecurrentConfig, TrainConfig

from jaxdl.data.scaling import minmax_fit, minmax_inverse, minmax_transform
from jaxdl.data.supervised import series_to_supervised
from jaxdl.data.prepared import WorkflowTask
from jaxdl.tasks.series import load_series
from jaxdl.tasks.recipe import optimizer, recurrent_layers
from jaxdl.workflow import Dense, Sequential
from jaxdl.workflow.model import TrainState
from jaxdl.tasks.registry import Task


def prepare(series: np.ndarray, n_in: int, test_size: int, val_size: int = 0):
    """-> dict with train/val/test windows of scaled differences and what inverting needs.
    The last `test_size` months are the test targets, the `val_size` before them the
    validation targets; the scaler is fitted on the training differences only."""
    if test_size < 1 or val_size < 0 or test_size + val_size + n_in + 2 > len(series):
        raise ValueError(f"series of {len(series)} points is too short for n_in={n_in}, "
                         f"val_size={val_size}, test_size={test_size}")
    diff = np.diff(series)                                    # d[t-1] = s[t] - s[t-1]
    n_test_from = len(diff) - test_size
    n_val_from = n_test_from - val_size
    scaler = minmax_fit(diff[:n_val_from], (-1.0, 1.0))
    scaled = minmax_transform(scaler, diff)[:, 0]
    X, y = series_to_supervised(scaled, n_in, 1)              # X rows predict diff index n_in..
    target_idx = np.arange(n_in, len(diff))                   # which diff each row predicts
    out = {"scaler": scaler}
    for name, sel in (("tr", target_idx < n_val_from), ("va", (target_idx >= n_val_from) & (target_idx < n_test_from)),
                      ("te", target_idx >= n_test_from)):
        out[f"X_{name}"] = X[sel].astype(np.float32)
        out[f"y_{name}"] = y[sel, :, 0].astype(np.float32)
        out[f"prev_{name}"] = series[target_idx[sel]]          # s[t-1] for each target s[t]
        out[f"truth_{name}"] = series[target_idx[sel] + 1]
    out["prev"], out["truth"] = out["prev_te"], out["truth_te"]
    return out


def undo(d, scaled_pred, prev=None):
    """Scaled predicted differences -> passengers: inverse scaling, then add s[t-1]."""
    prev = d["prev"] if prev is None else prev
    return prev + minmax_inverse(d["scaler"], np.asarray(scaled_pred).reshape(-1, 1))[:, 0]


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


@dataclass(frozen=True)
class ForecastConfig:
    name: str = "forecast"
    series: str = setting("airline", doc="a series shipped in jaxdl/data/series/")
    n_in: int = setting(12, ge=1, doc="months in each input window")
    test_size: int = setting(24, ge=1)
    val_size: int = setting(12, ge=0, doc="the months before the test part")
    mlp_hidden: int = setting(32, ge=1, doc="the MLP-window baseline's hidden units")


def forecast(cfg: ForecastConfig, seed: int, model: RecurrentConfig, optim: OptimConfig,
             train: TrainConfig) -> WorkflowTask:
    """model.layers recurrent layers (model.name, model.hidden units) -> Dense(1) on windows of
    n_in scaled differences, trained with optim.*; scored in passengers (thousands): rmse on
    val and test. After training: the persistence and MLP-window baselines on test (the MLP
    trained with the same optimizer, batch size and epochs), and forecast.png."""
    n_in, batch_size = cfg.n_in, train.batch_size
    d = prepare(load_series(cfg.series), n_in, cfg.test_size, cfg.val_size)
    sc = d["scaler"]
    lstm = Sequential([*recurrent_layers(model), Dense(1)], input_shape=(n_in, 1)).compile(optimizer(optim), "mse")

    def score(preds, target):
        y, (prev, truth) = target
        passengers = prev + (preds[:, 0] - sc.lo) / (sc.hi - sc.lo) * (sc.data_max[0] - sc.data_min[0]) + sc.data_min[0]
        return {"loss": ((preds - y) ** 2).mean(), "rmse": jnp.sqrt(((passengers - truth) ** 2).mean())}

    splits = {name: (d[f"X_{s}"], d[f"y_{s}"], None, (d[f"prev_{s}"], d[f"truth_{s}"]))
              for name, s in (("val", "va"), ("test", "te")) if len(d[f"X_{s}"])}
    persistence = rmse(d["prev"], d["truth"])

    def after(state, run_dir):
        ts = TrainState(*(jax.tree.map(lambda a: a[0], state[k]) for k in ("params", "opt_state", "state")))
        pred = undo(d, lstm.predict(ts, d["X_te"]))
        mlp = Sequential([Dense(cfg.mlp_hidden, "relu"), Dense(1)], input_shape=(n_in,)).compile(
            optimizer(optim), "mse")
        tm, _ = mlp.fit(mlp.init(jax.random.PRNGKey(seed)), d["X_tr"][..., 0], d["y_tr"], batch_size=batch_size,
                        epochs=train.epochs, verbose=0, seed=seed)
        pred_mlp = undo(d, mlp.predict(tm, d["X_te"][..., 0]))
        _plot(d["truth"], pred, pred_mlp, d["prev"], run_dir / "forecast.png")
        base = {"test/rmse_persistence": persistence, "test/rmse_mlp": rmse(pred_mlp, d["truth"])}
        lstm_rmse = rmse(pred, d["truth"])
        beat = lstm_rmse < min(base.values())
        print(f"[jaxdl] forecast: LSTM {lstm_rmse:.2f}, MLP window {base['test/rmse_mlp']:.2f}, persistence "
              f"{persistence:.2f}: the LSTM {'beats' if beat else 'does NOT beat'} both baselines "
              "(test RMSE, thousands of passengers; replica 0)")
        return {"final": base,
                "baselines": {"persistence": base["test/rmse_persistence"], "mlp": base["test/rmse_mlp"]}}

    return WorkflowTask("forecast", lstm, (d["X_tr"], d["y_tr"], None), splits, score, batch_size,
                        "test/rmse", persistence, f"persistence (next = last month) gives RMSE {persistence:.1f}",
                        higher_is_better=False, after=after)


def _plot(truth, lstm, mlp, persistence, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    t = np.arange(len(truth))
    ax.plot(t, truth, "k-", label="truth")
    ax.plot(t, lstm, "r-", label="LSTM")
    ax.plot(t, mlp, "b--", label="MLP window")
    ax.plot(t, persistence, ":", color="gray", label="persistence")
    ax.set_xlabel("held-out month")
    ax.set_ylabel("passengers (thousands)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


TASKS = (Task("forecast", forecast, ForecastConfig, "workflow", ("model", "optim", "train")),)
