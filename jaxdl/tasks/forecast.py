"""Sequence prediction (the seed's first sequence problem) on a real series: the
next month of airline passengers from the previous `n_in` months.

Pipeline (the toolkit's pieces): first differences -> min-max scaling to [-1, 1]
fitted on the training part -> lagged supervised windows [samples, n_in, 1] ->
LSTM -> inverse scaling -> undo the difference. The last `test_size` months are
held out and forecast one step ahead. Baselines, as the seed advises building
first: persistence (next = last) and an MLP on the same sliding windows.
Reported in the original units: test/rmse, test/rmse_persistence, test/rmse_mlp.
"""
from __future__ import annotations

import jax
import numpy as np

from jaxdl.data.scaling import minmax_fit, minmax_inverse, minmax_transform
from jaxdl.data.supervised import series_to_supervised
from jaxdl.tasks.series import load_series
from jaxdl.workflow import LSTM, Dense, Sequential


def prepare(series: np.ndarray, n_in: int, test_size: int):
    """-> dict with train/test windows of scaled differences and what inverting needs."""
    if test_size < 1 or test_size + n_in + 2 > len(series):
        raise ValueError(f"series of {len(series)} points is too short for n_in={n_in}, test_size={test_size}")
    diff = np.diff(series)                                    # d[t-1] = s[t] - s[t-1]
    n_train_diff = len(diff) - test_size
    scaler = minmax_fit(diff[:n_train_diff], (-1.0, 1.0))
    scaled = minmax_transform(scaler, diff)[:, 0]
    X, y = series_to_supervised(scaled, n_in, 1)              # X rows predict diff index n_in..
    target_idx = np.arange(n_in, len(diff))                   # which diff each row predicts
    test = target_idx >= n_train_diff
    return {"X_tr": X[~test].astype(np.float32), "y_tr": y[~test, :, 0].astype(np.float32),
            "X_te": X[test].astype(np.float32), "y_te": y[test, :, 0].astype(np.float32),
            "prev": series[target_idx[test]],                 # s[t-1] for each test target s[t]
            "truth": series[target_idx[test] + 1], "scaler": scaler}


def undo(d, scaled_pred):
    return d["prev"] + minmax_inverse(d["scaler"], scaled_pred.reshape(-1, 1))[:, 0]


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def run(series="airline", n_in=12, test_size=24, mlp_hidden=32, hidden=32, epochs=600, batch_size=16,
        lr=3e-3, seed=0, verbose=0, checkpoint_dir=None, checkpoint_every=1, resume=False):
    d = prepare(load_series(series), n_in, test_size)
    key = jax.random.PRNGKey(seed)
    lstm = Sequential([LSTM(hidden), Dense(1)], input_shape=(n_in, 1)).compile("adam", "mse", lr=lr)
    ts = lstm.init(key)
    ts, hist = lstm.fit(ts, d["X_tr"], d["y_tr"], batch_size=batch_size, epochs=epochs, verbose=verbose,
                        seed=seed, validation_data=(d["X_te"], d["y_te"]), checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                        resume=resume)
    pred = undo(d, lstm.predict(ts, d["X_te"]))
    mlp = Sequential([Dense(mlp_hidden, "relu"), Dense(1)], input_shape=(n_in,)).compile("adam", "mse", lr=lr)
    tm = mlp.init(key)
    tm, _ = mlp.fit(tm, d["X_tr"][..., 0], d["y_tr"], batch_size=batch_size, epochs=epochs, verbose=0, seed=seed)
    pred_mlp = undo(d, mlp.predict(tm, d["X_te"][..., 0]))
    return {"test/rmse": rmse(pred, d["truth"]), "test/rmse_persistence": rmse(d["prev"], d["truth"]),
            "test/rmse_mlp": rmse(pred_mlp, d["truth"])}, hist, {"truth": d["truth"], "lstm": pred,
                                                                "mlp": pred_mlp, "persistence": d["prev"]}
