"""The LSTM's member rules (custom_vmap in jaxdl.models.lstm): under jax.vmap over a
population's members, the member-major forward and backward equal each member's own
gradient, computed by autodiff of the plain reference scan, for every argument (float64)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models.lstm import lstm_init, lstm_scan, lstm_scan_reference

P, T, B, D, H = 3, 7, 5, 4, 6      # distinct sizes, so a moved axis cannot hide


def _members(dtype=jnp.float64):
    ks = jax.random.split(jax.random.PRNGKey(1), 8)
    params = jax.vmap(lambda k: lstm_init(k, D, H, dtype=dtype))(jax.random.split(ks[0], P))
    params = params._replace(b=params.b + 0.3 * jax.random.normal(ks[7], params.b.shape, dtype))
    return dict(
        params=params,
        xs_shared=jax.random.normal(ks[1], (T, B, D), dtype),
        xs_each=jax.random.normal(ks[2], (P, T, B, D), dtype),
        h0=0.5 * jax.random.normal(ks[3], (P, B, H), dtype),       # nonzero initial state
        c0=jax.random.normal(ks[4], (P, B, H), dtype),
        mask_shared=(jax.random.uniform(ks[5], (T, B)) > 0.3).astype(dtype),
        mask_each=(jax.random.uniform(ks[6], (P, T, B)) > 0.3).astype(dtype),
        w=jax.random.normal(ks[7], (T, B, H), dtype))


def _loss(scan, w, hoist=None, remat=None, compute_dtype=None):
    def f(p, xs, h0, c0, mask):
        kw = {} if scan is lstm_scan_reference else {"hoist": hoist, "remat": remat}
        hs, (h, c) = scan(p, xs, (h0, c0), mask, compute_dtype=compute_dtype, **kw)
        return (hs * w).sum() + 0.3 * (h ** 2).sum() + 0.7 * jnp.sin(c).sum()
    return f


def _member(tree, i, batched=True):
    return jax.tree.map(lambda a: a[i], tree) if batched else tree


def _max_diff(a, b):
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("hoist, xs_kind, mask_kind", [
    (False, "shared", None), (False, "shared", "shared"), (False, "each", "each"),
    (True, "shared", "shared"), (True, "each", "shared")])
def test_vmapped_gradients_equal_each_members_autodiff(x64, hoist, xs_kind, mask_kind):
    m = _members()
    xs = m[f"xs_{xs_kind}"]
    mask = None if mask_kind is None else m[f"mask_{mask_kind}"]
    axes = (0, 0 if xs_kind == "each" else None, 0, 0, None if mask_kind != "each" else 0)
    grad = jax.grad(_loss(lstm_scan, m["w"], hoist), argnums=(0, 1, 2, 3))
    ours = jax.jit(jax.vmap(grad, in_axes=axes))(m["params"], xs, m["h0"], m["c0"], mask)
    ref_grad = jax.jit(jax.grad(_loss(lstm_scan_reference, m["w"]), argnums=(0, 1, 2, 3)))
    for i in range(P):
        ref = ref_grad(_member(m["params"], i), _member(xs, i, xs_kind == "each"), m["h0"][i], m["c0"][i],
                       None if mask is None else _member(mask, i, mask_kind == "each"))
        assert _max_diff(_member(ours, i), ref) < 1e-11, (i, hoist, xs_kind, mask_kind)


def test_vmapped_outputs_and_shared_parameters_sum_over_members(x64):
    """Unbatched parameters with batched inputs: the gradient is the sum over members."""
    m = _members()
    p0 = _member(m["params"], 0)
    f = _loss(lstm_scan, m["w"])
    total = jax.grad(lambda p: jax.vmap(f, in_axes=(None, 0, 0, 0, None))(
        p, m["xs_each"], m["h0"], m["c0"], m["mask_shared"]).sum())(p0)
    ref = jax.grad(lambda p: sum(_loss(lstm_scan_reference, m["w"])(p, m["xs_each"][i], m["h0"][i], m["c0"][i],
                                                                    m["mask_shared"]) for i in range(P)))(p0)
    assert _max_diff(total, ref) < 1e-11
    hs = jax.vmap(lambda p, x: lstm_scan(p, x, (m["h0"][0], m["c0"][0]))[0], in_axes=(0, None))(
        m["params"], m["xs_shared"])
    for i in range(P):
        ref_hs = lstm_scan_reference(_member(m["params"], i), m["xs_shared"], (m["h0"][0], m["c0"][0]))[0]
        assert _max_diff(hs[i], ref_hs) < 1e-12


def test_nested_vmap_and_remat_under_vmap(x64):
    """A vmap inside the member vmap (the rule's own body is batched again), and remat
    segments under vmap, give each member's gradient."""
    m = _members()
    grad = jax.grad(_loss(lstm_scan, m["w"], remat=3), argnums=(0, 2))
    inner = jax.vmap(grad, in_axes=(None, None, 0, 0, None))          # 2 initial states per member
    h0s = jnp.stack([m["h0"], -m["h0"]], axis=1)                       # [P, 2, B, H]
    c0s = jnp.stack([m["c0"], 0.5 * m["c0"]], axis=1)
    ours = jax.jit(jax.vmap(inner, in_axes=(0, None, 0, 0, None)))(m["params"], m["xs_shared"], h0s, c0s,
                                                                    m["mask_shared"])
    ref_grad = jax.jit(jax.grad(_loss(lstm_scan_reference, m["w"]), argnums=(0, 2)))
    for i in range(P):
        for j in range(2):
            ref = ref_grad(_member(m["params"], i), m["xs_shared"], h0s[i, j], c0s[i, j], m["mask_shared"])
            assert _max_diff(jax.tree.map(lambda a: a[i, j], ours), ref) < 1e-11, (i, j)


def test_bf16_under_vmap_equals_each_members_bf16_path():
    m = _members(jnp.float32)
    grad = jax.grad(_loss(lstm_scan, m["w"], compute_dtype="bfloat16"), argnums=(0, 2, 3))
    ours = jax.jit(jax.vmap(grad, in_axes=(0, None, 0, 0, None)))(m["params"], m["xs_shared"], m["h0"], m["c0"],
                                                                   m["mask_shared"])
    solo_grad = jax.jit(grad)
    for i in range(P):
        solo = solo_grad(_member(m["params"], i), m["xs_shared"], m["h0"][i], m["c0"][i], m["mask_shared"])
        scale = max(float(jnp.abs(a).max()) for a in jax.tree.leaves(solo))
        assert _max_diff(_member(ours, i), solo) < 1e-5 * scale, i


def test_the_member_axis_stays_leading_in_the_compiled_gradient():
    """Plain vmap of the time-major scan stacks outputs as [T, P, B, .] and transposes them
    to [P, ...] for every weight-gradient contraction (and x_t @ Wx on every step); with the
    member rules every transpose XLA keeps leaves the member axis where it is."""
    m = _members(jnp.float32)
    grad = jax.grad(_loss(lstm_scan, m["w"], hoist=False), argnums=(0, 2, 3))
    hlo = jax.jit(jax.vmap(grad, in_axes=(0, None, 0, 0, None))).lower(
        m["params"], m["xs_shared"], m["h0"], m["c0"], None).compile().as_text()
    perms = [tuple(int(d) for d in p.split(",")) for p in re.findall(r" transpose\(.*?dimensions=\{([\d,]+)\}", hlo)]
    assert all(p[0] == 0 for p in perms), perms
    assert np.isfinite(np.asarray(jax.tree.leaves(jax.jit(jax.vmap(grad, in_axes=(0, None, 0, 0, None)))(
        m["params"], m["xs_shared"], m["h0"], m["c0"], None))[0])).all()


@pytest.mark.parametrize("hoist, mask_kind", [(False, None), (False, "each"), (True, "shared")])
def test_one_member_runs_the_single_models_kernels(x64, hoist, mask_kind):
    """A vmap of size 1 (train_loop always vmaps, over one member by default) runs the
    single model's forward and backward on the member: gradients and outputs equal the
    unbatched lstm_scan's to the last bit and autodiff of the reference to 1e-11."""
    m = _members()
    one = jax.tree.map(lambda a: a[:1], m)
    mask = {None: None, "each": one["mask_each"], "shared": m["mask_shared"]}[mask_kind]
    mask_axis = 0 if mask_kind == "each" else None
    grad = jax.grad(_loss(lstm_scan, m["w"], hoist), argnums=(0, 1, 2, 3))
    ours = jax.jit(jax.vmap(grad, in_axes=(0, 0, 0, 0, mask_axis)))(
        one["params"], one["xs_each"], one["h0"], one["c0"], mask)
    solo_mask = None if mask is None else (mask[0] if mask_kind == "each" else mask)
    args = (_member(one["params"], 0), one["xs_each"][0], one["h0"][0], one["c0"][0], solo_mask)
    solo = jax.jit(grad)(*args)
    for a, b in zip(jax.tree.leaves(_member(ours, 0)), jax.tree.leaves(solo)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ref = jax.jit(jax.grad(_loss(lstm_scan_reference, m["w"]), argnums=(0, 1, 2, 3)))(*args)
    assert _max_diff(_member(ours, 0), ref) < 1e-11


def test_one_member_keeps_the_weight_left_products():
    """On the CPU from 256 units the single model's per-step products are weight-left
    ([4H, B] = Wh^T h^T); a one-member vmap compiles the same products, not the member
    rules' [1, B, 4H] batched dots."""
    from jaxdl.models.products import WEIGHT_LEFT_MIN
    if jax.default_backend() != "cpu":
        pytest.skip("weight-left products are the CPU's form")
    Hw, Bw = WEIGHT_LEFT_MIN, 3
    params = lstm_init(jax.random.PRNGKey(0), 2, Hw)
    xs = jnp.ones((4, Bw, 2))
    z = jnp.zeros((Bw, Hw))

    def dots(f, *a):
        hlo = jax.jit(jax.grad(f)).lower(*a).compile().as_text()
        return sorted(re.findall(r"(f32\[[\d,]+\])\S* dot\(", hlo))

    loss = lambda p, x: (lstm_scan(p, x, (z, z))[0] ** 2).sum()
    solo = dots(loss, params, xs)
    one = dots(lambda p, x: jax.vmap(loss)(p, x).sum(), jax.tree.map(lambda a: a[None], params), xs[None])
    assert f"f32[{4 * Hw},{Bw}]" in solo, solo          # the forward's weight-left product
    assert one == solo, (one, solo)
