"""The source text's chapters 1-3: perceptron, linear unit, delta-rule backprop, 式6."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.classic import backprop, linear_unit, perceptron
from jaxdl.gradcheck import gradient_check
from jaxdl.models.mlp import mlp_apply, mlp_init
from jaxdl.tasks.classic import salary, truth_table


@pytest.mark.parametrize("op,w,b", [("and", [0.5, 0.5], -0.8), ("or", [0.5, 0.5], -0.3)])
def test_seed_hand_set_weights_classify_truth_tables(op, w, b):
    x, t = truth_table(op)
    p = {"w": jnp.asarray(w), "b": jnp.asarray(b)}
    np.testing.assert_array_equal(perceptron.predict(p, jnp.asarray(x)), t)


@pytest.mark.parametrize("op", ["and", "or"])
def test_perceptron_rule_learns_and_or_in_10_iterations(op):
    x, t = (jnp.asarray(a) for a in truth_table(op))
    p, accs = perceptron.train(perceptron.init(2), x, t, 10, 0.1)
    assert float(accs[-1]) == 1.0
    np.testing.assert_array_equal(perceptron.predict(p, x), t)


def test_perceptron_reproduces_seed_and_weights():
    """hanbt/learn_dl perceptron.py prints weights [0.1, 0.2], bias -0.2 for AND."""
    x, t = (jnp.asarray(a) for a in truth_table("and"))
    p, _ = perceptron.train(perceptron.init(2), x, t, 10, 0.1)
    np.testing.assert_allclose(p["w"], [0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(p["b"], -0.2, atol=1e-6)


def test_perceptron_cannot_learn_xor():
    x, t = (jnp.asarray(a) for a in truth_table("xor"))
    _, accs = perceptron.train(perceptron.init(2), x, t, 1000, 0.1)
    assert float(jnp.max(accs)) < 1.0


def test_linear_unit_reproduces_seed_predictions():
    x, y = (jnp.asarray(a) for a in salary())
    p = linear_unit.sgd(linear_unit.init(1), x, y, 10, 0.01)
    pred = float(linear_unit.predict(p, jnp.asarray([3.4])))
    assert abs(pred - 3907.30) < 0.05   # the source text's printed 3.4-year salary


def test_both_optimizers_converge_to_least_squares(x64):
    x, y = (jnp.asarray(a, jnp.float64) for a in salary())
    ls = linear_unit.least_squares(x, y)
    bgd = linear_unit.batch_gd(linear_unit.init(1, jnp.float64), x, y, 100000, 0.008)
    np.testing.assert_allclose(bgd["w"], ls["w"], rtol=1e-8)
    np.testing.assert_allclose(bgd["b"], ls["b"], rtol=1e-8)
    # per-sample SGD with a constant rate cycles near the optimum, within O(rate):
    # 10x smaller rate, about 10x closer
    far = linear_unit.sgd(linear_unit.init(1, jnp.float64), x, y, 100000, 1e-3)
    near = linear_unit.sgd(linear_unit.init(1, jnp.float64), x, y, 100000, 1e-4)
    np.testing.assert_allclose(near["w"], ls["w"], rtol=1e-3)
    np.testing.assert_allclose(near["b"], ls["b"], rtol=1e-2)
    assert abs(float(near["b"] - ls["b"])) < 0.2 * abs(float(far["b"] - ls["b"]))
    # and both land far from the start: this is not a vacuous check
    assert float(ls["w"][0]) > 1000


@pytest.mark.parametrize("sizes", [[3, 2], [4, 5, 3], [5, 6, 4, 2], [3, 4, 4, 4, 3]])
def test_delta_rule_equals_autodiff_of_seed_error(x64, sizes):
    key = jax.random.PRNGKey(len(sizes))
    params = backprop.init(key, sizes, dtype=jnp.float64, init_scheme="glorot")
    x = jax.random.uniform(jax.random.PRNGKey(1), (7, sizes[0]), jnp.float64)
    t = jax.random.uniform(jax.random.PRNGKey(2), (7, sizes[-1]), jnp.float64)
    ours = backprop.delta_rule_grads(params, x, t)
    ref = jax.grad(backprop.sse)(params, x, t)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    # the trainers' (batch-mean loss, grads) pair, from one forward pass
    v, g = backprop.delta_rule_value_and_grad(params, x, t)
    rv, rg = jax.value_and_grad(lambda p: backprop.sse(p, x, t) / x.shape[0])(params)
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(rg)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    # the update 式9/式10 moves downhill: E decreases for a small rate
    new = backprop.delta_rule_update(params, x, t, 1e-2)
    assert float(backprop.sse(new, x, t)) < float(backprop.sse(params, x, t))


def test_delta_rule_sign_is_checked():
    """A flipped sign would still 'train' in some sense; the check must see it."""
    params = backprop.init(jax.random.PRNGKey(0), [3, 4, 2])
    x, t = jnp.ones((1, 3)), jnp.asarray([[0.9, 0.1]])
    g = backprop.delta_rule_grads(params, x, t)
    y = backprop.predict(params, x)
    d_out = y * (1 - y) * (t - y)
    np.testing.assert_allclose(g[-1]["b"], -d_out[0], rtol=1e-6)


def test_gradient_check_on_seed_network(x64):
    params = backprop.init(jax.random.PRNGKey(0), [4, 5, 3], dtype=jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 4), jnp.float64)
    t = jnp.asarray([[0.9, 0.1, 0.1], [0.1, 0.1, 0.9]], jnp.float64)
    errs = gradient_check(lambda p: backprop.sse(p, x, t), params,
                          grads=backprop.delta_rule_grads(params, x, t))
    assert len(errs) == 4 and max(errs.values()) < 1e-6, errs


def test_gradient_check_catches_a_wrong_gradient(x64):
    params = backprop.init(jax.random.PRNGKey(0), [4, 3], dtype=jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 4), jnp.float64)
    t = jnp.full((2, 3), 0.5, jnp.float64)
    wrong = jax.tree.map(lambda g: 1.1 * g, backprop.delta_rule_grads(params, x, t))
    errs = gradient_check(lambda p: backprop.sse(p, x, t), params, grads=wrong)
    assert max(errs.values()) > 0.05


@pytest.mark.parametrize("act,out", [("relu", "none"), ("tanh", "sigmoid")])
def test_gradient_check_on_mlp_variants(x64, act, out):
    params = mlp_init(jax.random.PRNGKey(3), [3, 4, 2], "glorot", jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(4), (3, 3), jnp.float64)
    labels = jnp.asarray([0, 1, 1])
    from jaxdl.objectives import softmax_xent
    loss = lambda p: softmax_xent(mlp_apply(p, x, act, out), labels)["loss"].sum()
    errs = gradient_check(loss, params)
    assert max(errs.values()) < 1e-6, errs


def test_linear_unit_and_perceptron_gradient_check(x64):
    """式6 on the linear unit: the rule's update direction is -grad of 式2."""
    x, y = (jnp.asarray(a, jnp.float64) for a in salary())
    p = {"w": jnp.asarray([900.0]), "b": jnp.asarray(10.0)}
    E = lambda p: 0.5 * ((y - linear_unit.predict(p, x)) ** 2).sum()
    err = y - linear_unit.predict(p, x)
    rule_grad = {"w": -(err @ x), "b": -err.sum()}    # 式3's step is -eta * this
    errs = gradient_check(E, p, grads=rule_grad)
    assert max(errs.values()) < 1e-7, errs


@pytest.mark.parametrize("op,acc", [("and", 1.0), ("or", 1.0), ("xor", 0.5)])
def test_truth_table_runs_from_hydra(tmp_path, capsys, op, acc):
    from tests.helpers import run_inprocess
    s, d = run_inprocess(tmp_path, [f"task={op}", "model=perceptron", "logger.mode=disabled"])
    assert s["final"]["train/accuracy"] == acc
    out = capsys.readouterr().out
    if op == "xor":
        assert "not linearly separable" in out
    else:
        assert f"1 {op} 1 = 1" in out and "exactly (accuracy 1.0)" in out
    assert (d / "checkpoints" / "10").exists() and (d / "metrics.jsonl").exists()


def test_salary_runs_from_hydra_and_plots(tmp_path, capsys):
    from tests.helpers import run_inprocess
    s, d = run_inprocess(tmp_path, ["task=salary", "model=linear", "logger.mode=disabled"])
    assert "Work 3.4 years, monthly salary = 3907.30" in capsys.readouterr().out
    assert (d / "salary_fit.png").stat().st_size > 1000
    with pytest.raises(Exception, match="model 'lstm' cannot run task 'salary'"):
        run_inprocess(tmp_path, ["task=salary", "model=lstm", "logger.mode=disabled"], "bad")
