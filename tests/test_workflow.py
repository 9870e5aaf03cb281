"""define / compile / fit / evaluate / predict, stateful LSTMs and masking."""
import jax
import numpy as np
import pytest

from jaxdl.train.errors import TrainingDiverged
from jaxdl.workflow import LSTM, Dense, RepeatVector, Sequential

SERIES = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])


def test_seed_single_feature_example():
    data = SERIES.reshape((1, 10, 1))
    assert data.shape == (1, 10, 1)
    c = Sequential([LSTM(32), Dense(1)], input_shape=(10, 1)).compile("adam", "mse")
    assert c.predict(c.init(jax.random.PRNGKey(0)), data).shape == (1, 1)


def test_seed_two_parallel_series_example():
    data = np.stack([SERIES, SERIES[::-1]], 1).reshape(1, 10, 2)
    assert data.shape == (1, 10, 2) and data[0, 0].tolist() == [0.1, 1.0]
    c = Sequential([LSTM(32), Dense(1)], input_shape=(10, 2)).compile("adam", "mse")
    assert c.predict(c.init(jax.random.PRNGKey(0)), data).shape == (1, 1)


def _sum_task(n=512, T=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, T, 1)).astype(np.float32)
    return X, X.mean(1)


def test_fit_evaluate_predict_learn_and_report(capsys):
    X, y = _sum_task()
    c = Sequential([LSTM(16), Dense(1)], input_shape=(8, 1)).compile("adam", "mse", ["mae"], lr=1e-2)
    ts = c.init(jax.random.PRNGKey(0))
    before = c.evaluate(ts, X, y)["loss"]
    ts, hist = c.fit(ts, X, y, batch_size=30, epochs=15, validation_data=(X[:50], y[:50]), verbose=2)
    assert set(hist) == {"loss", "mae", "val_loss", "val_mae"} and len(hist["loss"]) == 15
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 15 and "Epoch 15/15 - loss:" in out
    after = c.evaluate(ts, X, y)
    assert after["loss"] < before / 20
    np.testing.assert_allclose(after["loss"], ((c.predict(ts, X) - y) ** 2).mean(), rtol=1e-4)


def test_optimizer_by_name_or_optax_and_losses():
    import optax
    X = np.random.default_rng(0).random((64, 5, 2)).astype(np.float32)
    y = (X[:, :, 0].sum(1) > X[:, :, 1].sum(1)).astype(np.int64)
    for opt in ["sgd", "rmsprop", optax.adam(1e-2)]:
        c = Sequential([LSTM(8), Dense(2, "softmax")], input_shape=(5, 2)).compile(
            opt, "categorical_crossentropy", ["accuracy"])
        ts = c.init(jax.random.PRNGKey(0))
        ts, h = c.fit(ts, X, np.eye(2)[y], batch_size=16, epochs=3, verbose=0)
        assert np.isfinite(h["loss"]).all() and "accuracy" in h
        assert set(c.predict_classes(ts, X).tolist()) <= {0, 1}
    cb = Sequential([LSTM(8), Dense(1, "sigmoid")], input_shape=(5, 2)).compile("adam", "binary_crossentropy",
                                                                               ["accuracy"], lr=2e-2)
    ts = cb.init(jax.random.PRNGKey(0))
    ts, h = cb.fit(ts, X, y[:, None].astype(np.float32), batch_size=16, epochs=30, verbose=0)
    assert h["accuracy"][-1] > 0.85


def test_stateful_pieces_equal_the_whole_sequence():
    """Case 2 of the source text's state management: one long sequence cut into
    sub-sequences; a stateful model that carries state between them predicts
    exactly what it predicts on the whole sequence at once."""
    rng = np.random.default_rng(1)
    long = rng.standard_normal((1, 24, 3)).astype(np.float32)
    whole = Sequential([LSTM(6, return_sequences=True), Dense(2)], batch_input_shape=(1, 24, 3)).compile()
    parts = Sequential([LSTM(6, return_sequences=True, stateful=True), Dense(2)],
                       batch_input_shape=(1, 8, 3)).compile()
    ts_w, ts_p = whole.init(jax.random.PRNGKey(3)), parts.init(jax.random.PRNGKey(3))
    ref = whole.predict(ts_w, long, batch_size=1)
    pieces = long.reshape(1, 3, 8, 3).transpose(1, 0, 2, 3).reshape(3, 8, 3)   # consecutive sub-sequences
    got, ts_p2 = parts.predict(ts_p, pieces, batch_size=1, return_state=True)
    np.testing.assert_allclose(got.reshape(1, 24, 2), ref, rtol=1e-5, atol=1e-6)
    # without carrying state (reset before each piece) the answer differs
    fresh = np.concatenate([parts.predict(parts.reset_states(ts_p), p[None], batch_size=1) for p in pieces])
    assert not np.allclose(fresh.reshape(1, 24, 2), ref, atol=1e-3)
    # reset_states zeroes the carried state
    assert np.abs(np.asarray(ts_p2.state[0][0])).sum() > 0
    assert np.abs(np.asarray(parts.reset_states(ts_p2).state[0][0])).sum() == 0


def test_stateful_fit_keeps_state_until_reset_and_refuses_shuffle():
    X, y = _sum_task(n=40, T=5)
    c = Sequential([LSTM(4, stateful=True), Dense(1)], batch_input_shape=(10, 5, 1)).compile("adam", "mse")
    ts = c.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="shuffle=False"):
        c.fit(ts, X, y, batch_size=10, epochs=1)
    for _ in range(3):               # the source text's loop: fit one epoch, then reset
        ts, _ = c.fit(ts, X, y, batch_size=10, epochs=1, shuffle=False, verbose=0)
        assert np.abs(np.asarray(ts.state[0][0])).sum() > 0
        ts = c.reset_states(ts)
        assert np.abs(np.asarray(ts.state[0][0])).sum() == 0
    with pytest.raises(ValueError, match="batches of 10"):
        c.predict(ts, X, batch_size=8)
    with pytest.raises(ValueError, match="multiple of its batch size"):
        c.fit(ts, X[:35], y[:35], batch_size=10, shuffle=False, verbose=0)


def test_stateless_means_reset_every_batch():
    """Cases 1 and 3: independent sequences, state reset after every batch, so the
    order and the grouping of samples does not change the predictions."""
    X, _ = _sum_task(n=12, T=6)
    c = Sequential([LSTM(5), Dense(1)], input_shape=(6, 1)).compile()
    ts = c.init(jax.random.PRNGKey(0))
    a = c.predict(ts, X, batch_size=1)
    b = c.predict(ts, X[::-1], batch_size=4)[::-1]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_wrong_feature_count_is_a_clear_error():
    c = Sequential([LSTM(4), Dense(1)], input_shape=(10, 1)).compile()
    ts = c.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="2 features per step but the model was built for 1"):
        c.predict(ts, np.zeros((3, 10, 2)))
    with pytest.raises(ValueError, match=r"samples, time steps, features"):
        c.predict(ts, np.zeros((10, 1)))


def test_padded_steps_do_not_change_the_result():
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((L, 2)).astype(np.float32) for L in (3, 7, 5)]
    from jaxdl.data.padding import pad_sequences
    c = Sequential([LSTM(6), Dense(3, "softmax")], input_shape=(7, 2)).compile("adam", "categorical_crossentropy")
    ts = c.init(jax.random.PRNGKey(0))
    alone = [Sequential([LSTM(6), Dense(3, "softmax")], input_shape=(len(s), 2)).compile().predict(ts, s[None])
             for s in seqs]
    for pad in ("pre", "post"):
        X, m = pad_sequences(seqs, padding=pad, value=9.0, return_mask=True)
        got = c.predict(ts, X, mask=m)
        np.testing.assert_allclose(got, np.concatenate(alone), rtol=1e-5, atol=1e-6)
        assert not np.allclose(c.predict(ts, X), got, atol=1e-3)   # without the mask the pads matter


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_checkpoint(tmp_path):
    X, y = _sum_task(n=64, T=4)
    c = Sequential([LSTM(4), Dense(1)], input_shape=(4, 1)).compile("sgd", "mse", lr=0.1)
    ts = c.init(jax.random.PRNGKey(0))
    ts, _ = c.fit(ts, X, y, batch_size=16, epochs=2, verbose=0, checkpoint_dir=tmp_path / "ck")
    good = sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.isdigit())
    bad_y = y.copy()
    bad_y[40] = np.inf                       # a bad target in the third batch
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 3.*checkpoint \(epoch 2\) is intact"):
        c.fit(ts, X, bad_y, batch_size=16, epochs=2, shuffle=False, verbose=0, checkpoint_dir=tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == good


def test_encoder_decoder_shapes():
    c = Sequential([LSTM(8), RepeatVector(3), LSTM(8, return_sequences=True), Dense(5, "softmax")],
                   input_shape=(6, 4)).compile("adam", "categorical_crossentropy", ["accuracy"])
    ts = c.init(jax.random.PRNGKey(0))
    assert c.predict(ts, np.zeros((2, 6, 4))).shape == (2, 3, 5)


@pytest.mark.parametrize("stateful", [False, True])
def test_fit_resumes_from_its_last_checkpoint_bit_identical(tmp_path, capsys, stateful):
    """A fit stopped after epoch 2 (its checkpoint dir is all a killed fit leaves) and
    restarted with resume=True ends with the parameters, optimizer state, LSTM state
    and history of a fit that was never interrupted."""
    X, y = _sum_task(n=40, T=5)
    if stateful:
        m = Sequential([LSTM(6, stateful=True), Dense(1)], batch_input_shape=(10, 5, 1))
        kw = dict(batch_size=10, shuffle=False)
    else:
        m = Sequential([LSTM(6), Dense(1)], input_shape=(5, 1))
        kw = dict(batch_size=8, shuffle=True, validation_data=(X[:12], y[:12]))
    c = m.compile("adam", "mse", ["mae"], lr=1e-2)
    ts0 = c.init(jax.random.PRNGKey(0))
    ref, h_ref = c.fit(ts0, X, y, epochs=5, verbose=0, checkpoint_dir=tmp_path / "ref", resume=True, **kw)
    c.fit(ts0, X, y, epochs=2, verbose=0, checkpoint_dir=tmp_path / "run", resume=True, **kw)
    assert "resumed" not in capsys.readouterr().out
    got, h = c.fit(ts0, X, y, epochs=5, verbose=0, checkpoint_dir=tmp_path / "run", resume=True, **kw)
    out = capsys.readouterr().out
    assert "fit resumed from" in out and "at epoch 2" in out
    assert h == h_ref and len(h["loss"]) == 5
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a finished fit resumed again trains nothing and returns what it saved
    again, h2 = c.fit(ts0, X, y, epochs=5, verbose=0, checkpoint_dir=tmp_path / "run", resume=True, **kw)
    assert h2 == h_ref
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    X, y = _sum_task(n=16, T=5)
    small = Sequential([LSTM(4), Dense(1)], input_shape=(5, 1)).compile("adam", "mse")
    small.fit(small.init(jax.random.PRNGKey(0)), X, y, batch_size=8, epochs=1, verbose=0,
              checkpoint_dir=tmp_path / "ck")
    saved = sorted(p.name for p in (tmp_path / "ck").iterdir())
    big = Sequential([LSTM(7), Dense(1)], input_shape=(5, 1)).compile("adam", "mse")
    with pytest.raises(ValueError, match="does not fit this model.*new checkpoint_dir"):
        big.fit(big.init(jax.random.PRNGKey(0)), X, y, batch_size=8, epochs=2, verbose=0,
                checkpoint_dir=tmp_path / "ck", resume=True)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == saved
    with pytest.raises(ValueError, match="needs the checkpoint_dir"):
        big.fit(big.init(jax.random.PRNGKey(0)), X, y, epochs=1, verbose=0, resume=True)
