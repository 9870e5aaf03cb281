"""Online gradient estimators (jaxdl.estimators: RTRL, UORO, SnAp-1) and their trainer
(jaxdl.train.online_trainer): exactness against full BPTT and finite differences in float64,
SnAp-1's exact case, UORO's unbiasedness (a check biased estimators fail), learning through
the real loop, populations, resume, refusals, the Marschall add task and the study's smoke run."""
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.config.schema import EstimatorConfig, OptimConfig, RecurrentConfig
from jaxdl.estimators import get_estimator, rtrl_memory_bytes, snap1_memory_bytes
from jaxdl.estimators.online import param_size, state_size
from jaxdl.estimators.snap1 import unit_mask
from jaxdl.gradcheck import numerical_gradient
from jaxdl.models.cell import cells
from jaxdl.models.rnn import rnn_apply, rnn_init
from jaxdl.objectives import get_objective
from tests.helpers import held_stream, load_script, online_gradient

ROOT = Path(__file__).resolve().parents[1]
XENT = get_objective("xent")
T, B, D, H, O = 5, 2, 3, 3, 3


def Model(**kw):
    """The stack's config (the typed RecurrentConfig), small by default."""
    return RecurrentConfig(**{"hidden": 8, "forget_bias": 1.0, **kw})


def Est(name="rtrl", every=10):
    return EstimatorConfig(name, every)


def _cell_or_skip(name):
    if name not in cells():
        pytest.skip(f"cell {name!r} is not in jaxdl.models yet (jaxdl/models/gru.py or elman.py, written by the "
                    f"cells engineer, are not merged); cells here: {sorted(cells())}")


def _problem(cell, layers, key=0, diagonal=False):
    """Random float64 params, a stream with one held step (mask 0, weight 0) and a NONZERO
    initial state of every layer."""
    opts = {"forget_bias": 1.0} if cell == "lstm" else {}
    params = rnn_init(jax.random.PRNGKey(key), D, H, O, layers, cell, dtype=jnp.float64, **opts)
    if diagonal:   # every unit sees only its own past
        params["layers"] = [p._replace(wh=p.wh * unit_mask(H, p.wh.shape[1], p.wh.dtype)) for p in params["layers"]]
    zero = tuple(cells()[cell].carry(p, B) for p in params["layers"])
    data, carry0 = held_stream(100 + key, T, B, D, O, zero)
    return params, data, carry0


def _bptt_loss(params, data, carry0):
    xs, ys, w, mask = data
    preds, _ = rnn_apply(params, xs, carry0, mask)
    return (XENT(preds, ys)["loss"] * w).sum()


def _online_grad(name, params, data, carry0, key=0):
    """Sum over the stream of the estimator's per-step gradients, parameters held fixed."""
    return online_gradient(name, params, data, carry0, key)[0]


def _maxdiff(a, b):
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ------------------------------------------------------------------------ RTRL is exact

@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2])
def test_rtrl_equals_full_bptt_from_a_nonzero_state(x64, cell, layers):
    """No parameter updates: RTRL's summed gradient is jax.grad of the whole-stream loss
    (through the stack's scan path, a different implementation), for every leaf, 1e-10."""
    _cell_or_skip(cell)
    params, data, carry0 = _problem(cell, layers)
    want = jax.grad(_bptt_loss)(params, data, carry0)
    got = jax.jit(lambda p: _online_grad("rtrl", p, data, carry0))(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert float(jnp.abs(b).max()) > 1e-3                   # every leaf gets a real gradient
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


def test_rtrl_matches_finite_differences(x64):
    """The source text's 式6 (central differences) on every parameter of a 2-layer LSTM."""
    params, data, carry0 = _problem("lstm", 2, key=3)
    got = _online_grad("rtrl", params, data, carry0)
    num = numerical_gradient(lambda p: _bptt_loss(p, data, carry0), params, eps=1e-5)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(num)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_rtrl_memory_estimate_counts_the_influence():
    params = rnn_init(jax.random.PRNGKey(0), 4, 16, 4, 2, "lstm")
    n, p = state_size(params["layers"]), param_size(params["layers"])
    assert n == 2 * 2 * 16 and p == 4 * 16 * (4 + 16 + 1) + 4 * 16 * (16 + 16 + 1)
    assert rtrl_memory_bytes(params["layers"], 8) == 8 * (3 * n * p + n * n) * 4
    assert snap1_memory_bytes(params["layers"], 8) == 8 * 2 * p * 4      # k = 2 components x p
    est = get_estimator("rtrl", XENT).init(params, 8)
    assert sum(a.size for a in jax.tree.leaves(est)) == 8 * n * p        # M as stored


# ------------------------------------------------------------------------ SnAp-1

def test_snap1_is_rtrl_when_every_unit_sees_only_its_own_past(x64):
    params, data, carry0 = _problem("lstm", 1, diagonal=True)
    exact = _online_grad("rtrl", params, data, carry0)
    snap = _online_grad("snap1", params, data, carry0)
    assert _maxdiff(snap, exact) < 1e-12
    dense, data, carry0 = _problem("lstm", 1)
    assert _maxdiff(_online_grad("snap1", dense, data, carry0), _online_grad("rtrl", dense, data, carry0)) > 1e-3


def test_snap1_in_a_stack_keeps_each_layer_on_its_own_units(x64):
    """Two layers with unit-diagonal wh: the top layer's gradient is still RTRL's (its
    influence never leaves its own units), the lower layer's is not (its influence on the
    top layer's state across time is dropped); the readout's is exact in both."""
    params, data, carry0 = _problem("lstm", 2, diagonal=True)
    exact = _online_grad("rtrl", params, data, carry0)
    snap = _online_grad("snap1", params, data, carry0)
    assert _maxdiff(snap["layers"][1], exact["layers"][1]) < 1e-12
    assert _maxdiff(snap["readout"], exact["readout"]) < 1e-12
    assert _maxdiff(snap["layers"][0], exact["layers"][0]) > 1e-3


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_snap1_exact_case_for_the_other_cells(x64, cell):
    _cell_or_skip(cell)
    params, data, carry0 = _problem(cell, 1, diagonal=True)
    assert _maxdiff(_online_grad("snap1", params, data, carry0), _online_grad("rtrl", params, data, carry0)) < 1e-12


def _held_weighted(data):
    """The stream with its held step (mask 0) given a nonzero loss weight: the estimators still
    count that step's loss, on the state the step would have reached."""
    xs, ys, w, mask = data
    return xs, ys, w.at[2, 0].set(0.7), mask


def _flat_layer(p, c, h_in):
    """One layer's step on one stream with its carry flat: (F(theta, s), unravel)."""
    from jax.flatten_util import ravel_pytree

    from jaxdl.estimators.online import layer_step
    flat, unravel = ravel_pytree(c)
    return (lambda th, sf: ravel_pytree(layer_step(th, unravel(sf), h_in))[0]), flat, unravel


def _snap1_reference(params, data, carry0):
    """SnAp-1 from its definition (Menick et al. 2021), one stream at a time, nothing batched or
    fused: per layer the dense Jacobians J = dF/ds [n, n] and I = dF/dtheta [n, p]
    (jax.jacfwd), M <- P * (J M + I) with P the pattern unit(state i) == unit(parameter
    column j), the gradient dL_t/ds_t . M (dL_t/ds_t through the layers above at the same
    step), a held step keeping state and M."""
    from jax.flatten_util import ravel_pytree

    from jaxdl.estimators.online import layer_output, stack_step, step_loss
    xs, ys, w, mask = data
    layers, readout = params["layers"], params["readout"]
    total = jax.tree.map(jnp.zeros_like, layers)
    for b in range(B):
        s = tuple(jax.tree.map(lambda a: a[b], c) for c in carry0)
        Ms = []
        for p, c in zip(layers, s):
            n, P = ravel_pytree(c)[0].size, ravel_pytree(p)[0].size
            Ms.append(jnp.zeros((n, P)))
        for t in range(T):
            h, new, news_M = xs[t, b], [], []
            for p, c, M in zip(layers, s, Ms):
                F, flat, unravel = _flat_layer(p, c, h)
                pf, unr_p = ravel_pytree(p)
                J = jax.jacfwd(lambda sf: F(p, sf))(flat)
                I = jax.jacfwd(lambda th: F(unr_p(th), flat))(pf)
                H = layer_output(p, c).shape[-1]
                cols = jnp.concatenate([jnp.broadcast_to(jnp.arange(a.shape[-1]) % H, a.shape).ravel()
                                        for a in jax.tree.leaves(p)])
                pattern = (jnp.arange(flat.size)[:, None] % H) == cols[None, :]
                news_M.append(jnp.where(pattern, J @ M + I, 0.0))
                c2 = unravel(F(p, flat))
                new.append(c2)
                h = layer_output(p, c2)
            pushes = jax.tree.map(jnp.zeros_like, s)
            gpush = jax.grad(lambda pu: step_loss(XENT, readout, layers, stack_step(layers, s, xs[t, b], pu),
                                                  ys[t, b], w[t, b])[0])(pushes)
            for i, (p, M) in enumerate(zip(layers, news_M)):
                g = ravel_pytree(gpush[i])[0] @ M
                total[i] = jax.tree.map(jnp.add, total[i], ravel_pytree(p)[1](g))
            if mask[t, b] > 0:
                s, Ms = tuple(new), news_M
    return total


@pytest.mark.parametrize("layers", [1, 2])
def test_snap1_equals_its_definition_with_a_weighted_held_step(x64, layers):
    """The batched, fused SnAp-1 against a plain per-stream implementation of the paper's
    equations (dense Jacobians masked to the pattern), float64, 1e-10, every leaf of every
    layer, a dense LSTM from a nonzero state, a held step whose loss still counts."""
    params, data, carry0 = _problem("lstm", layers, key=5)
    data = _held_weighted(data)
    want = _snap1_reference(params, data, carry0)
    got = jax.jit(lambda p: _online_grad("snap1", p, data, carry0))(params)["layers"]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert float(jnp.abs(b).max()) > 1e-3
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1)])
def test_snap1_n_steps_at_once_equal_its_steps_in_turn(x64, cell, layers):
    """SnAp-1's form for n steps at once (what the online trainer runs: M touched once per
    update) gives what its per-step form gives over the same steps, added (float64, 1e-10):
    the gradient of every leaf, the new influence and carry, the sums; from a nonzero carry
    and a nonzero influence (the same steps run once before), with a held step whose loss
    counts."""
    from jaxdl.estimators.online import run_steps
    params, data, carry0 = _problem(cell, layers, key=5)
    data = _held_weighted(data)
    from jaxdl.estimators.snap1 import snap1
    est = snap1(XENT, min_chunk=1)
    in_turn = jax.jit(lambda *a: run_steps(est._replace(steps=None), *a))
    carry, st, _, _ = in_turn(params, carry0, est.init(params, B), *data)
    assert float(jnp.abs(jax.tree.leaves(st)[0]).max()) > 1e-2
    want = in_turn(params, carry, st, *data)
    got = jax.jit(est.steps)(params, carry, st, *data)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert float(jnp.abs(b).max()) > 1e-3
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(n for n, c in cells().items() if c.stages))
def test_cell_stages_in_turn_equal_the_step(x64, name):
    """A cell's stages (what SnAp-1 mirrors to update its influence in place), run in turn on
    the carry as it stands, give the step's new carry (float64, nonzero state); each
    component is computed by exactly one stage."""
    cell = cells()[name]
    params = cell.init(jax.random.PRNGKey(1), D, H, dtype=jnp.float64)
    k = jax.random.split(jax.random.PRNGKey(2), 3)
    x = jax.random.normal(k[0], (B, D))
    carry = tuple(0.5 * jax.random.normal(jax.random.fold_in(k[1], i), a.shape)
                  for i, a in enumerate(cell.carry(params, B)))
    assert sorted(a for outs, _ in cell.stages for a in outs) == list(range(len(carry)))
    cur = list(carry)
    for outs, fn in cell.stages:
        for a, v in zip(outs, fn(params, tuple(cur), x, jnp.matmul)):
            cur[a] = v
    for got, want in zip(cur, cell.step(params, carry, x)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_snap1_updates_its_influence_in_place():
    """The compiled online loop of SnAp-1 on an LSTM copies no component of the recurrent
    weight's influence (M's largest leaf, [B, 4H, H]) per step: each stage's pass reads M[a]
    at the index it writes, so XLA updates it in place (a copy of B x k x p numbers per step
    is what made SnAp-1 slow). At these tiny sizes XLA may still duplicate the cheap update
    of the small input-weight leaf into its consumers and copy that one."""
    import re
    Bm, Hm, Dm = 3, 8, 5                                   # M.wh: [3, 32, 8]
    params = rnn_init(jax.random.PRNGKey(0), Dm, Hm, 3, 1, "lstm")
    est = get_estimator("snap1", XENT)
    st = est.init(params, Bm)
    carry = tuple(cells()["lstm"].carry(p, Bm) for p in params["layers"])
    xs, ys = jnp.zeros((4, Bm, Dm)), jnp.zeros((4, Bm), jnp.int32)
    w = m = jnp.ones((4, Bm))

    def run(params, carry, st):
        def body(c, inp):
            carry, st = c
            carry, st, g, _ = est.step(params, carry, st, *inp)
            return (carry, st), g
        return jax.lax.scan(body, (carry, st), (xs, ys, w, m))
    hlo = jax.jit(run).lower(params, carry, st).compile().as_text()
    body = re.search(r"body=%([\w.\-]+)", hlo).group(1)
    comp = hlo[hlo.index(f"%{body} "):]
    comp = comp[:comp.index("\n}")]
    shapes = {f"f32[{','.join(map(str, M.wh.shape))}]" for M in st["M"][0]}
    copies = [ln for ln in comp.splitlines() if " copy(" in ln and ln.split("= ")[1].split("{")[0] in shapes]
    assert "copy(" in hlo and not copies, copies


# ------------------------------------------------------------------------ UORO is unbiased

def _z(mean, exact, sd, K):
    """Standardised errors of a K-draw mean, per recurrent-parameter component."""
    m, e, s = (np.concatenate([np.ravel(a) for a in jax.tree.leaves(t)]) for t in (mean, exact, sd))
    return (m - e) / (s / np.sqrt(K))


def _unbiased(z, bound=5.0) -> bool:
    """The check: every standardised error within `bound` standard errors."""
    return bool(np.abs(z).max() < bound)


def _uoro_draws(params, data, carry0, K, reset_every=None):
    """K independent UORO gradients (keys 0..K-1); reset_every: the influence is zeroed every
    that many steps (truncated UORO, a biased estimator)."""
    xs, ys, w, mask = data
    est = get_estimator("uoro", XENT)

    def one(key):
        st = est.init(params, B, jax.random.PRNGKey(key))
        carry, g = carry0, None
        for t in range(T):
            if reset_every and t % reset_every == 0:
                st = est.reset(st)
            carry, st, gt, _ = est.step(params, carry, st, xs[t], ys[t], w[t], mask[t])
            g = gt if g is None else jax.tree.map(jnp.add, g, gt)
        return g["layers"]
    return jax.jit(jax.vmap(one))(jnp.arange(K))


def test_uoro_is_unbiased_and_the_check_catches_biased_estimators(x64):
    """Over K = 4000 noise draws, every component of UORO's mean gradient lies within 5
    standard errors (its measured std / sqrt K) of RTRL's: a z-bound that ~110 components
    pass by chance with probability > 0.9999. The same bound, with the same measured std,
    rejects SnAp-1 on this dense net and UORO whose influence is reset every 2 steps
    (truncated UORO): both biased."""
    K = 4000
    params, data, carry0 = _problem("lstm", 1)
    exact = _online_grad("rtrl", params, data, carry0)["layers"]
    draws = _uoro_draws(params, data, carry0, K)
    mean, sd = (jax.tree.map(f, draws) for f in (lambda a: a.mean(0), lambda a: a.std(0, ddof=1)))
    z = _z(mean, exact, sd, K)
    assert _unbiased(z), np.abs(z).max()
    assert 0.3 < np.mean(z ** 2) < 3.0                          # the spread is what the std says
    assert float(np.median(np.concatenate([np.ravel(a) for a in jax.tree.leaves(sd)]))) > 1e-3   # really noisy
    snap = _online_grad("snap1", params, data, carry0)["layers"]
    assert not _unbiased(_z(snap, exact, sd, K))
    trunc = _uoro_draws(params, data, carry0, K, reset_every=2)
    tmean, tsd = (jax.tree.map(f, trunc) for f in (lambda a: a.mean(0), lambda a: a.std(0, ddof=1)))
    assert not _unbiased(_z(tmean, exact, tsd, K))


def _uoro_reference(params, data, carry0, key):
    """UORO from the paper's equations (Tallec & Ollivier 2018, the docstring of
    jaxdl/estimators/uoro.py), one stream at a time with theta flat, the dense J and I
    (jax.jacfwd), the same signs nu_t as the estimator draws (its key, split once per step)."""
    from jax.flatten_util import ravel_pytree

    from jaxdl.estimators.online import stack_step, step_loss
    from jaxdl.estimators.uoro import EPS, rademacher_bits
    xs, ys, w, mask = data
    layers, readout = params["layers"], params["readout"]
    thf, unr_th = ravel_pytree(layers)
    n = ravel_pytree(jax.tree.map(lambda a: a[0], carry0))[0].size
    nus = []
    for _ in range(T):
        key, sub = jax.random.split(key)
        nus.append(rademacher_bits(sub, (B, n), jnp.float64))
    total = jnp.zeros_like(thf)
    for b in range(B):
        s = ravel_pytree(jax.tree.map(lambda a: a[b], carry0))[0]
        unr_s = ravel_pytree(jax.tree.map(lambda a: a[b], carry0))[1]
        st, tt = jnp.zeros(n), jnp.zeros_like(thf)
        for t in range(T):
            F = lambda th, sf: ravel_pytree(stack_step(unr_th(th), unr_s(sf), xs[t, b]))[0]
            J, I = jax.jacfwd(F, argnums=1)(thf, s), jax.jacfwd(F, argnums=0)(thf, s)
            nu = nus[t][b]
            Js, nuI = J @ st, nu @ I
            rho0 = jnp.sqrt(jnp.linalg.norm(tt) / (jnp.linalg.norm(Js) + EPS)) + EPS
            rho1 = jnp.sqrt(jnp.linalg.norm(nuI) / (jnp.linalg.norm(nu) + EPS)) + EPS
            st2, tt2 = rho0 * Js + rho1 * nu, tt / rho0 + nuI / rho1
            new = F(thf, s)
            gs = jax.grad(lambda sf: step_loss(XENT, readout, layers, unr_s(sf), ys[t, b], w[t, b])[0])(new)
            total = total + (gs @ st2) * tt2
            if mask[t, b] > 0:
                s, st, tt = new, st2, tt2
    return unr_th(total)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1), ("rnn", 1)])
def test_uoro_equals_its_equations_with_the_same_signs(x64, cell, layers):
    """The batched UORO (one pass over theta~ per step, the hold folded into its scalars,
    |nu^T I_t| of wh as |h| |g|) against a per-stream implementation of the paper's
    equations with the same noise: float64, 1e-10, every leaf, a nonzero state, a held step
    whose loss still counts."""
    _cell_or_skip(cell)
    params, data, carry0 = _problem(cell, layers, key=6)
    data = _held_weighted(data)
    want = _uoro_reference(params, data, carry0, jax.random.PRNGKey(3))
    got = jax.jit(lambda p: _online_grad("uoro", p, data, carry0, key=3))(params)["layers"]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert float(jnp.abs(b).max()) > 1e-3
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


def test_rademacher_bits_are_fair_independent_signs():
    from jaxdl.estimators.uoro import rademacher_bits
    nu = np.asarray(rademacher_bits(jax.random.PRNGKey(0), (64, 100), jnp.float32))
    assert set(np.unique(nu)) == {-1.0, 1.0}
    assert abs(nu.mean()) < 0.03                                  # 6400 signs: sd of the mean 0.0125
    assert abs(np.mean(nu[:, :-1] * nu[:, 1:])) < 0.04            # neighbours (bits of one word) uncorrelated
    assert abs(np.mean(nu[:, :50] * nu[:, 50:])) < 0.04
    other = np.asarray(rademacher_bits(jax.random.PRNGKey(1), (64, 100), jnp.float32))
    assert (nu != other).mean() > 0.4


# ------------------------------------------------------------------------ the trainer, the loop

def _echo(lag=2, length=160, streams=4):
    from jaxdl.tasks.synthetic import EchoConfig, echo
    return echo(EchoConfig(lag=lag, vocab=2, length=length, streams=streams, test_length=200, val_length=0), 0)


def _opt(lr=0.01, clip=1.0, injectable=False):
    from jaxdl.optimizers import optimizers
    return optimizers(OptimConfig("adam", lr, clip), injectable)


def _trainer(est="rtrl", task=None, lr=0.02, injectable=False, **model):
    from jaxdl.train.online_trainer import online_trainer
    return online_trainer(task or _echo(), Model(**model), _opt(lr, injectable=injectable), Est(est, 10), 0)


def test_online_rtrl_learns_echo_through_the_loop():
    from jaxdl.train.loop import LoopPlan, MemoryRecorder, train_loop
    tr = _trainer("rtrl")
    res = train_loop(tr, MemoryRecorder(), LoopPlan(6, members=1))
    acc = res.per_member["test/accuracy"][0]
    assert acc > 0.9, acc                                       # chance is 0.5
    assert tr.updates_per_epoch == 16                             # 160 steps / every 10


def _leaves_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("est", ["rtrl", "uoro"])
def test_killed_and_resumed_is_bit_identical(tmp_path, est):
    """2 epochs straight vs 1 epoch, a checkpoint, a fresh process state resumed from it and
    1 more: the same params, optimizer state, recurrent state and influence (UORO's noise
    key included), bit for bit."""
    from jaxdl.run.context import RunContext
    from jaxdl.train.loop import LoopPlan, train_loop
    tr = _trainer(est, task=_echo(length=60, streams=2), hidden=4)

    def run(name, epochs):
        ctx = RunContext(tmp_path / name, None, checkpoint_every=1, progress=False)
        try:
            return train_loop(tr, ctx, LoopPlan(epochs, members=2)).state
        finally:
            ctx.close()
    ref = run("ref", 2)
    run("run", 1)
    resumed = run("run", 2)
    _leaves_equal(ref, resumed)
    assert jax.tree.structure(ref) == jax.tree.structure(resumed)
    if est == "uoro":
        assert not np.array_equal(ref["seq"][1]["key"][0], ref["seq"][1]["key"][1])   # members draw their own noise


class _StopAt:
    """A stop flag (the StopFlag interface RunContext reads) whose request arrives at its
    n-th reading, as a SIGTERM would between two chunks."""
    name = "SIGTERM"

    def __init__(self, n: int):
        self.n = n

    @property
    def requested(self) -> bool:
        self.n -= 1
        return self.n <= 0


def test_a_stop_in_mid_epoch_resumes_bit_identical(tmp_path):
    """The online trainer trains its epochs in chunks (train_chunk): a stop request between
    two chunks of epoch 2 (chunks of 2 of its 6 updates) ends the run with a mid-epoch
    checkpoint; the relaunch resumes at that update and ends where an uninterrupted run
    ends, bit for bit."""
    from jaxdl.run.context import RunContext
    from jaxdl.train.errors import Preempted
    from jaxdl.train.loop import Chunking, LoopPlan, train_loop
    tr = _trainer("snap1", task=_echo(length=60, streams=2), hidden=4)
    assert tr.train_chunk is not None and tr.updates_per_epoch == 6
    plan = LoopPlan(3, members=2, chunking=Chunking(updates=2))

    def run(name, stop=None):
        ctx = RunContext(tmp_path / name, None, checkpoint_every=100, progress=False, stop_flag=stop)
        try:
            return train_loop(tr, ctx, plan).state
        finally:
            ctx.close()
    ref = run("ref")
    with pytest.raises(Preempted, match=r"stopped in epoch 2 after update 2 of 6"):
        run("run", _StopAt(4))                 # readings: 2 in epoch 1, 1 at its end, the 4th in epoch 2
    assert [int(x.name) for x in (tmp_path / "run" / "checkpoints" / "mid").iterdir() if x.name.isdigit()]
    _leaves_equal(ref, run("run"))


def test_a_population_member_equals_its_solo_run():
    """UORO (noise from the member's key) in a population over lr x 2 replicas: the member
    (lr 0.03, replica 1) ends where the solo run's replica 1 at lr 0.03 ends."""
    from jaxdl.train.loop import LoopPlan, MemoryRecorder, train_loop
    from jaxdl.train.population import members, stacked
    task = _echo(length=60, streams=2)
    tr = _trainer("uoro", task=task, hidden=4, injectable=True)
    hps, reps = members({"optim.lr": [0.003, 0.03]}, 2)
    pop = train_loop(tr, MemoryRecorder(), LoopPlan(2, members=len(hps), hparams=stacked(hps), replica_of=reps)).state
    i = next(j for j, (h, r) in enumerate(zip(hps, reps)) if h["optim.lr"] == 0.03 and r == 1)
    solo = train_loop(_trainer("uoro", task=task, hidden=4, lr=0.03), MemoryRecorder(), LoopPlan(2, members=2)).state
    for a, b in zip(jax.tree.leaves(pop["params"]), jax.tree.leaves(solo["params"])):
        np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b[1]), rtol=1e-5, atol=1e-7)
    other = next(j for j, r in enumerate(reps) if r == 1 and j != i)
    w_other, w_solo = pop["params"]["readout"]["w"][other], solo["params"]["readout"]["w"][1]
    assert not np.allclose(np.asarray(w_other), np.asarray(w_solo))


def test_reset_policies_reset_the_influence_with_the_state():
    """With the parameters held (lr 0) and two equal batches: reset=batch ends both the
    recurrent state and the influence where one batch from zero ends; reset=never carries
    both into the second batch, so it ends elsewhere. The reset zeroes the influence and
    keeps UORO's noise key."""
    import optax
    from jaxdl.train.online_trainer import make_online
    task = _echo(length=30, streams=2)
    params = rnn_init(jax.random.PRNGKey(0), 2, 4, 2, 1, "lstm")
    sgd0 = optax.sgd(0.0)
    one = jax.tree.map(jnp.asarray, task.train)
    two = jax.tree.map(lambda a: jnp.concatenate([a, a]), one)
    for name in ("rtrl", "uoro"):          # SnAp-1's reset is RTRL's (zeros like the influence)
        est = get_estimator(name, XENT)
        carry0 = tuple(cells()["lstm"].carry(p, 2) for p in params["layers"])
        seq0 = (carry0, est.init(params, 2, jax.random.PRNGKey(1)))
        ends = {}
        for reset, data in (("batch", one), ("batch", two), ("never", two)):
            eng = make_online(est, sgd0, 30, 10, reset, lambda x: x)
            ends[reset, data.mask.shape[0]] = jax.jit(eng.run_epoch)(params, sgd0.init(params), seq0, data)[2]
        infl = lambda seq: {k: v for k, v in seq[1].items() if k != "key"}
        if name == "uoro":      # the noise differs between the two batches, so only the state is comparable
            _leaves_equal(ends["batch", 1][0], ends["batch", 2][0])
        else:
            _leaves_equal(ends["batch", 1], ends["batch", 2])
        assert _maxdiff(infl(ends["never", 2]), infl(ends["batch", 2])) > 1e-4
        assert _maxdiff(ends["never", 2][0], ends["batch", 2][0]) > 1e-4
        zeroed = eng.fresh_seq(params, ends["never", 2])
        assert all(not np.asarray(a).any() for a in jax.tree.leaves((zeroed[0], infl(zeroed))))
        if name == "uoro":
            np.testing.assert_array_equal(zeroed[1]["key"], ends["never", 2][1]["key"])


@pytest.mark.parametrize("setting,message", [
    (dict(model=dict(remat="sqrt")), "model.remat='sqrt'"),
    (dict(model=dict(dtype="bfloat16")), "model.dtype='bfloat16'"),
    (dict(est="adjoint"), "estimator.name='adjoint'"),
    (dict(est="tbptt"), "estimator.name='tbptt'"),
    (dict(every=0), "estimator.every must be >= 1"),
    (dict(model=dict(hidden=1024, layers=2)), "RTRL's influence needs about"),
])
def test_refused_settings_name_themselves(setting, message):
    from jaxdl.train.online_trainer import online_trainer
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("'", ".")):
        online_trainer(_echo(), Model(**setting.get("model", {})), _opt(),
                       Est(setting.get("est", "rtrl"), setting.get("every", 10)), 0)


def test_forget_bias_on_a_cell_without_a_forget_gate_is_refused():
    from jaxdl.train.online_trainer import online_trainer
    other = sorted(n for n, c in cells().items() if "forget_bias" not in c.options)
    if not other:
        pytest.skip(f"no cell without a forget gate in jaxdl.models yet (GRU/Elman not merged): {sorted(cells())}")
    with pytest.raises(ValueError, match="model.forget_bias=1.0"):
        online_trainer(_echo(), Model(name=other[0]), _opt(), Est(), 0)


# ------------------------------------------------------------------------ the Marschall add task

def test_marschall_add_targets_and_levels():
    from jaxdl.tasks.marschall import MarschallAddConfig, add, add_levels
    t = add(MarschallAddConfig(t1=2, t2=5, length=300, streams=3, test_length=50, val_length=0), 3)
    x, y, w = t.train.x[0, ..., 0], t.train.y[0, ..., 0], t.train.weight[0]
    np.testing.assert_allclose(y[5:], 0.5 + 0.5 * x[3:-2] - 0.25 * x[:-5])   # y(t) from x(t - t1), x(t - t2)
    assert set(np.unique(x)) == {0.0, 1.0} and abs(x.mean() - 0.5) < 0.05
    assert (w[:5] == 0).all() and (w[5:] == 1).all()
    lv = add_levels(2, 5)
    # the levels are the cross-entropies of the three predictors, measured on the stream
    xent = lambda p, q: float(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q))))
    assert lv["no_memory"] == pytest.approx(xent(y[5:], np.full_like(y[5:], 0.625)), abs=0.01)
    assert lv["t1_learned"] == pytest.approx(xent(y[5:], 0.375 + 0.5 * x[3:-2]), abs=0.01)
    assert lv["no_memory"] > lv["t1_learned"] > lv["both_learned"]
    assert t.chance == lv["no_memory"] and t.loss == "binary_xent" and not t.higher_is_better
    with pytest.raises(ValueError, match="0 < t1 < t2"):
        add(MarschallAddConfig(t1=4, t2=4), 0)


def test_online_trainer_runs_the_add_task_with_snap1():
    from jaxdl.tasks.marschall import MarschallAddConfig, add
    from jaxdl.train.loop import LoopPlan, MemoryRecorder, train_loop
    task = add(MarschallAddConfig(t1=1, t2=3, length=200, streams=4, test_length=200, val_length=0), 0)
    res = train_loop(_trainer("snap1", task=task, hidden=8, lr=0.03), MemoryRecorder(), LoopPlan(4, members=1))
    assert res.per_member["test/loss"][0] < task.chance - 0.05    # below the no-memory level


# ------------------------------------------------------------------------ the study

def test_study_smoke(tmp_path):
    """The study end to end at tiny sizes: every part writes its numbers and figures."""
    script = ROOT / "experiments" / "estimators" / "study.py"
    p = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    st = load_script("experiments/estimators/study.py")
    sz = st.SMOKE
    cells_ = {(c["lag"], c["method"]) for c in res["learnability"]["cells"]}
    assert cells_ == {(L, m) for L in sz["learn"]["lags"] for m in st.methods(L, sz)}
    for c in res["learnability"]["cells"]:
        assert len(c["test"]["values"]) == sz["seeds"]
        assert c["test"]["mean"] == pytest.approx(np.mean(c["test"]["values"]))
    q = res["quality"]
    assert set(q["cosine"]) == {"uoro", "snap1", "tbptt"}
    assert all(-1.0 <= v <= 1.0 + 1e-6 for vs in q["cosine"].values() for v in vs)
    cost = res["cost"]
    assert set(cost["exponent"]) == {"rtrl", "uoro", "snap1", "tbptt"}
    assert (tmp_path / "results.md").read_text().count("|") > 20
    assert [c["method"] for c in res["add"]["cells"]] == sz["add"]["methods"]
    assert sorted(res["figures"]) == ["add_task.png", "cost.png", "gradient_quality.png", "learnability.png"]
    for name in res["figures"]:
        assert (tmp_path / name).stat().st_size > 10_000


@pytest.mark.slow
def test_full_study_findings(tmp_path):
    """The full study (about 16 minutes on 2 shared CPU cores) reproduces the README's
    findings: RTRL learns echo L = 4 and beats truncation below the lag at L = 4, 8, 16;
    UORO's single draws are the noisiest gradients, TBPTT(10, 20) the closest at L = 8; RTRL's
    cost grows fastest with the hidden size, and its memory faster than the others'."""
    script = ROOT / "experiments" / "estimators" / "study.py"
    p = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=3600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    acc = {(c["lag"], c["method"]): c["test"]["mean"] for c in res["learnability"]["cells"]}
    assert acc[4, "rtrl"] >= res["learnability"]["learned_threshold"]
    for L in (4, 8, 16):
        assert acc[L, "rtrl"] > acc[L, f"tbptt_k2_{L // 2}"] + 0.1, L
    q = res["quality"]["cosine"]
    assert np.mean(q["uoro"]) < np.mean(q["snap1"]) < np.mean(q["tbptt"])
    e, m = res["cost"]["exponent"], res["cost"]["memory_exponent"]
    assert e["rtrl"] > max(e["uoro"], e["snap1"]) and m["rtrl"] > max(m["uoro"], m["snap1"]) + 0.5
