"""SnAp-1 (Menick, Elsen, Evci, Osindero, Simonyan & Graves 2021, arXiv 2006.07232): RTRL
with the influence kept only on the immediate Jacobian's sparsity pattern.

In a cell of jaxdl.models.cell, parameter column j (of every leaf, last axis G*H) feeds
unit u = j % H of its own layer, and only through it the rest of the network. SnAp-1 keeps
M_t[a, j] = d s^(a)_{t, j%H} / d theta[..., j] for each of the layer's k carry components a
(LSTM: h and c, k = 2; GRU and Elman: h, k = 1) and drops every other entry:

    M_t[a, j] = sum_b D_t[a, b, j%H] M_{t-1}[b, j] + I_t[a, j]
    D_t[:, :, u]  the k x k diagonal block of unit u in J_t = ds_t/ds_{t-1}
    I_t[a, j]     d s^(a)_{t, j%H} / d theta[..., j], the immediate influence (exact: column j
                  reaches no other unit within a step)
    dL_t/dtheta[..., j] ~ sum_a dL_t/ds^(a)_{t, j%H} M_t[a, j]

D_t, generically for any cell: the step is called with rec = `diagonal_rec`, the same value
h @ wh whose derivative in h keeps only each unit's own columns (element-wise: wh[j % H, j]
dh[j % H]), so k jvps (tangent: ones on one carry component of every unit) give every unit's
k x k block exactly. I_t: k vjps in theta (cotangent: ones on one carry component). M_t is
stored compactly: per layer, a tuple over the k components of pytrees like its params (k x p
numbers, not a masked n x p matrix), each leaf unit-major: [G*H, B, ...] (a matrix leaf
[D, G*H] as [G*H, B, D], the order in which the vjp of h @ W forms its outer products), so
the gradient's sum over the streams is one product batched over the columns.

In place: a cell whose step computes its components one after another (`Cell.stages`; the
LSTM: c_t from (h_{t-1}, c_{t-1}), then h_t from (h_{t-1}, c_t)) gets the same M_t stage by
stage, each stage's blocks and I taken on the carry as it stands (chain rule):

    M^c_t = f M^c_{t-1} + D_ch M^h_{t-1} + I^c_t
    M^h_t = o tanh'(c_t) M^c_t + tanh(c_t) (D_oh M^h_{t-1} + I^o_t)

each pass reading the component it writes at the same index (and the other at the same
index), so XLA overwrites M^c, then M^h, and copies nothing.

Stacked layers: each layer's parameters keep influence on their own layer's units only; the
input from the layer below is taken as given at each step (its influence on the layer above
across time is dropped, as every off-pattern entry is). dL_t/ds_t of a lower layer is the
exact same-step gradient through the layers above (one vjp of the stack step in an additive
zero "push" on every layer's new carry). So with one layer and unit-diagonal wh (every unit
sees only its own past) SnAp-1 is RTRL exactly; with two layers, the top layer's gradient
still is, the lower layer's is not.

Cost per step and stream: about 2k + 2 forward passes of the stack (time O(k p), O(H^2) for
a layer of H units, as backprop); memory k x p. On a CPU the B x k x p influence's memory
traffic is the price, so the step is batched where it touches M: see `snap1`.

An update's n steps at once (`Estimator.steps`, what the online trainer runs; `_chunk`): the
parameters are fixed within an update and, per stream and unit, the update of M is linear
with k x k blocks, so M_n and the n steps' summed gradient are M_0 mixed by per-unit factors
(one backward recursion over the steps on [B, k + 1, k, H] numbers) plus vjps of the stages
at the carries kept from the forward pass: M is read and written once per update instead of
read three times and written once per step (exact: equal to the per-step form, float64).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.estimators.online import (Estimator, _one, _unone, layer_output, layer_step,
                                     run_steps, stack_step, step_loss, zero_state)
from jaxdl.models.cell import cell_of

# the layout of the state a checkpoint holds (jaxdl.estimators.STATE_LAYOUTS); 3: M one array
# per carry component, unit-major ([G*H, B, ...] per leaf), matrix leaves in the vjp's layout
STATE_LAYOUT = 3

# the fewest steps per update for which `snap1`'s steps() takes them at once (`_chunk`): below,
# the per-step update is faster on a CPU (one thread, default job: 0.44x at 1 and 2 steps,
# 0.72x at 4, 1.16x at 10 steps per update against the per-step form)
MIN_CHUNK = 8


def unit_mask(H: int, K: int, dtype) -> jax.Array:
    """D [H, K]: D[i, j] = 1 iff j % H == i (column j feeds unit i)."""
    return (jnp.arange(K)[None, :] % H == jnp.arange(H)[:, None]).astype(dtype)


def diagonal_rec(h, wh):
    """h @ wh in value; its derivative in h keeps only each unit's own columns. Column j of
    wh [H, G*H] feeds unit j % H, so that derivative is element-wise:
    d(h @ wh)[j] = wh[j % H, j] dh[j % H] (no product with a masked wh)."""
    H, K = wh.shape
    dg = jnp.diagonal(wh.reshape(H, K // H, H), axis1=0, axis2=2).reshape(K)    # wh[j % H, j]
    ht = jnp.tile(h, K // H)
    return jax.lax.stop_gradient(h) @ wh + (ht - jax.lax.stop_gradient(ht)) * dg


def _one_hot_carries(carry):
    """k tangents/cotangents for a carry of k [H] arrays: the b-th is ones on component b."""
    k = len(carry)
    return tuple(jnp.stack([jnp.full_like(c, 1.0 if a == b else 0.0) for b in range(k)])
                 for a, c in enumerate(carry))


def _vjp_layout(a, lead: int):
    """A leaf with `lead` leading axes: a matrix leaf's last two axes swapped, a vector leaf
    as it is. M keeps matrix leaves in this order: the vjp of h @ W gives the outer product
    h ct^T as ct h^T transposed, so stored this way I_t is added without a transpose."""
    return jnp.swapaxes(a, -1, -2) if a.ndim - lead >= 2 else a


def _stored(coefs):
    """The small per-unit coefficients [B, *, H] of one layer's passes, each stored once: as
    the output of one product with the identity. XLA fuses an element-wise producer into every
    consumer and would recompute them (their selects, the jvps' arithmetic) for each of M's
    B x k x p numbers, while a product's result is computed once (an optimization barrier is
    removed by XLA's CPU pipeline); one product for all of them, as each call costs."""
    sizes = [c.shape[1] for c in coefs]
    allc = jnp.concatenate(coefs, axis=1)
    allc = jnp.einsum("bru,uz->brz", allc, jnp.eye(allc.shape[-1], dtype=allc.dtype))
    return jnp.split(allc, list(np.cumsum(sizes)[:-1]), axis=1)


def _spread(coef, K: int):
    """coef [..., H] -> [..., K], column j = coef[..., j % H]: a per-unit coefficient laid out
    along a leaf's G*H columns (index arithmetic only: it fuses into M's passes)."""
    return jnp.tile(coef, K // coef.shape[-1])


def _per_unit(coef, a):
    """coef [B, K] (`_spread`) times a [K, B, ...], a leaf of M in its stored layout (unit
    axis first, then the streams). a is read as it is (no reshape): an element-wise pass that
    reads M at the index it writes may update M in place."""
    return coef.T.reshape(coef.T.shape + (1,) * (a.ndim - 2)) * a


def _widths(p) -> set:
    """The leaves' unit-axis widths K (G*H: one for a dense cell)."""
    return {a.shape[-1] for a in jax.tree.leaves(p)}


def _width(a) -> int:
    """K of a leaf of M (stored layout [K, B, ...])."""
    return a.shape[0]


def _unit_major(a):
    """A leaf of the batched vjp [B, K, ...] (`_vjp_layout`) in M's layout [K, B, ...]."""
    return jnp.moveaxis(a, 1, 0)


def stages_of(p, k: int) -> tuple:
    """The layer's cell's stages (jaxdl.models.cell): ((outs, fn), ...), or one stage that
    computes all k components from the old carry with the cell's step."""
    cell = cell_of(p)
    return cell.stages or ((tuple(range(k)), cell.step),)


def _stage_fn(fn, h_in):
    """A stage of one stream: (params, carry as it stands, rec) -> its outputs (tuple of [H])."""
    return lambda pp, cc, rec: _unone(fn(pp, _one(cc), h_in[None], rec))


def stage_carries(p, c, new) -> list:
    """The carry as it stands before each stage (`stages_of`): the components of earlier
    stages already new, the others old."""
    cur, out = list(c), []
    for outs, _ in stages_of(p, len(c)):
        out.append(tuple(cur))
        for a in outs:
            cur[a] = new[a]
    return out


def layer_blocks(p, c, h_in, new) -> list:
    """Per stage J [m, k(b), H]: the diagonal blocks of d(its m outputs) / d(the carry as it
    stands), one jvp per carry component with `diagonal_rec` (one stream)."""
    Js = []
    for (outs, fn), now in zip(stages_of(p, len(c)), stage_carries(p, c, new)):
        f = _stage_fn(fn, h_in)
        J = jax.vmap(lambda t: jax.jvp(lambda cc: f(p, cc, diagonal_rec), (now,), (t,))[1])(_one_hot_carries(now))
        Js.append(jnp.stack(J, axis=0))                                 # [m(a), k(b), H]
    return Js


def layer_jacobians(p, c, h_in):
    """One stream's layer step and what SnAp-1 needs of it, stage by stage (`stages_of`):
    (new carry, Js, Is), per stage J [m, k(b), H] (`layer_blocks`) and I a pytree like p with
    leaves [m, *leaf] in M's layout, d(its outputs)/dtheta."""
    new = layer_step(p, c, h_in)
    Is = []
    for (outs, fn), now in zip(stages_of(p, len(c)), stage_carries(p, c, new)):
        _, vjp = jax.vjp(lambda pp: _stage_fn(fn, h_in)(pp, now, jnp.matmul), p)
        (I,) = jax.vmap(vjp)(_one_hot_carries(tuple(now[a] for a in outs)))   # leaves [m, *leaf]
        Is.append(jax.tree.map(lambda a: _vjp_layout(a, 1), I))
    return new, layer_blocks(p, c, h_in, new), Is


def snap1(objective, min_chunk: int = MIN_CHUNK) -> Estimator:
    """SnAp-1 over params["layers"] for a jaxdl.objectives `objective`. The estimator state is
    {"M": a list over layers of a tuple over the k carry components of pytrees like each
    layer's params, leaves unit-major: [G*H, B] for a vector leaf, [G*H, B, D] for a matrix
    leaf [D, G*H]}.

    The step is batched over the B streams where it touches M (B x k x p numbers): the
    per-stream work (the layer step, each stage's jvps and vjps, dL_t/ds_t) is vmapped; then
    M is updated in the cell's stage order (`stages_of`), one element-wise pass per stage
    output and leaf, M[a] <- sum_b J[a, b] M[b] + I[a] with M[b] as it stands (earlier
    stages' components already new), so each pass reads its own component at the index it
    writes and XLA updates M[a] in place (the LSTM: c, then h from the new c; a held step:
    J = the identity row, I = 0). The gradient sum_b sum_a dL/ds^(a)_{b, j%H} M_t[a][j, b] is
    per component and leaf one product batched over the columns j, reading M once. On a
    held step the gradient still reads the unheld M_t: the M_{t-1} part through the whole
    step's diagonal blocks D_t (the product of its stages'), the I_t part as the vjp of the
    batched layer step with the cotangent dL/ds_t (computed only then).

    `steps` (what the online trainer runs for an update) takes n >= min_chunk steps at once
    (`_chunk`: M read and written once per update) and runs `step` in a scan below."""

    def step(params, carry, est, x, y, w, m):
        layers = params["layers"]
        real = m > 0
        h = x
        news, Jss, Iss = [], [], []
        for p, c in zip(layers, carry):
            c2, Js, Is = jax.vmap(layer_jacobians, in_axes=(None, 0, 0))(p, c, h)
            news.append(c2), Jss.append(Js), Iss.append(Is)
            h = jax.vmap(lambda cc: layer_output(p, cc))(c2)
        g_read, g_push, sums = _loss_grads(objective, params, carry, x, y, w)

        Ms, g_layers, h = [], [], x
        for p, c, c2, Js, Is, M, gc in zip(layers, carry, news, Jss, Iss, est["M"], g_push):
            k, H = len(c), c[0].shape[-1]
            eye = jnp.eye(k, dtype=c[0].dtype)
            keep = real.astype(c[0].dtype)
            D = jnp.broadcast_to(eye[None, :, :, None], (real.shape[0], k, k, H))   # the step's blocks [B, a, c, u]
            stages, Jhs = stages_of(p, k), []
            for (outs, _), J in zip(stages, Js):
                D = D.at[:, jnp.array(outs)].set(sum(J[:, :, c, None] * D[:, None, c] for c in range(k)))
                # J, a held step's: the identity rows
                Jh = jnp.where(real[:, None, None, None], J, eye[jnp.array(outs)][:, :, None])
                Jhs.append(Jh.reshape(-1, len(outs) * k, H))
            gs = jnp.stack(gc, axis=1)                                        # [B, k, H]: dL_t/ds_t
            # the coefficient of M_t[c] in the gradient (a held stream: of M_{t-1}, through D_t)
            coef = jnp.where(real[:, None, None], gs, sum(gs[:, a, None] * D[:, a] for a in range(k)))
            *Jhs, coef = _stored(Jhs + [coef])
            Mt = list(M)
            for (outs, _), Jh, I in zip(stages, Jhs, Is):
                Jh = {K: _spread(Jh, K).reshape(-1, len(outs), k, K) for K in _widths(p)}     # [B, m, k, K]

                def advance(Il, *Mb, r):       # output r of the stage: sum_b J[r, b] M[b] + I[r]
                    return (sum(_per_unit(Jh[_width(Mb[b])][:, r, b], Mb[b]) for b in range(k))
                            + keep.reshape((1, -1) + (1,) * (Il.ndim - 3)) * _unit_major(Il[:, r]))
                upd = [jax.tree.map(lambda Il, *Mb, r=r: advance(Il, *Mb, r=r), I, *Mt) for r in range(len(outs))]
                for r, a in enumerate(outs):
                    Mt[a] = upd[r]
            coef = {K: _spread(coef, K) for K in _widths(p)}                          # [B, k, K]
            g = jax.tree.map(lambda *Ml: _gradient(coef[_width(Ml[0])], Ml), *Mt)
            held_g = jax.lax.cond(
                jnp.all(real), lambda: jax.tree.map(jnp.zeros_like, p),
                lambda: jax.vjp(lambda pp: jax.vmap(lambda cc, hh: layer_step(pp, cc, hh))(c, h), p)[1](
                    jax.tree.map(lambda a: jnp.where(real[:, None], 0.0, a), gc))[0])
            g_layers.append(jax.tree.map(jnp.add, g, held_g))
            Ms.append(tuple(Mt))
            h = jax.vmap(lambda cc: layer_output(p, cc))(c2)
        new = jax.tree.map(lambda a, b: jnp.where(real[:, None], a, b), tuple(news), tuple(carry))
        return new, {"M": Ms}, {"layers": g_layers, "readout": g_read}, sums

    def forward(params, carry, x, y, w, m):
        """One step's per-stream work, batched over the streams, without touching M: the held
        new carry, per layer (old carry, unheld new carry, layer input, stage blocks Js,
        dL_t/ds_t [B, k, H]), the readout's gradient and the metric sums."""
        layers = params["layers"]
        h, recs = x, []
        for p, c in zip(layers, carry):
            c2 = jax.vmap(lambda cc, hh, p=p: layer_step(p, cc, hh))(c, h)
            Js = jax.vmap(lambda cc, hh, nn, p=p: layer_blocks(p, cc, hh, nn))(c, h, c2)
            recs.append([c, c2, h, Js])
            h = jax.vmap(lambda cc, p=p: layer_output(p, cc))(c2)
        g_read, g_push, sums = _loss_grads(objective, params, carry, x, y, w)
        for r, gc in zip(recs, g_push):
            r.append(jnp.stack(gc, axis=1))
        new = jax.tree.map(lambda a, b: jnp.where(m[:, None] > 0, a, b), tuple(r[1] for r in recs), tuple(carry))
        return new, [tuple(r) for r in recs], g_read, sums

    def steps(params, carry, est, xs, ys, ws, ms):
        """n steps at once ([n, B, ...] inputs; the parameters fixed across them), equal to n
        calls of `step` with their gradients and sums added: `_chunk` for n >= min_chunk,
        else `step` in a scan (`MIN_CHUNK`)."""
        if xs.shape[0] < min_chunk:
            return run_steps(Estimator("snap1", init, reset, step), params, carry, est, xs, ys, ws, ms)

        def one(c, inp):
            new, recs, g_read, sums = forward(params, c, *inp)
            return new, (recs, g_read, sums)
        carry, (recs, g_read, sums) = jax.lax.scan(one, carry, (xs, ys, ws, ms))
        Ms, g_layers = [], []
        for p, M, r in zip(params["layers"], est["M"], recs):
            Mn, g = _chunk(p, M, *r, ms > 0)
            Ms.append(Mn), g_layers.append(g)
        total = lambda t: jax.tree.map(lambda a: a.sum(0), t)
        return carry, {"M": Ms}, {"layers": g_layers, "readout": total(g_read)}, total(sums)

    def init(params, batch, key=None):
        zero = zero_state(params["layers"])
        return {"M": [tuple(jax.tree.map(lambda a: jnp.zeros((a.shape[-1], batch) + a.shape[:-1], a.dtype), p)
                            for _ in c) for p, c in zip(params["layers"], zero)]}

    def reset(est):
        return jax.tree.map(jnp.zeros_like, est)

    return Estimator("snap1", init, reset, step, steps)


def _loss_grads(objective, params, carry, x, y, w):
    """dL_t/d(readout), dL_t/ds_t of every layer's new carry (tuples of [B, H]: the gradient
    in an additive zero "push", through the layers above at the same step) and the metric
    sums, from the old carry (the unheld step)."""
    layers, readout = params["layers"], params["readout"]
    push = jax.tree.map(jnp.zeros_like, carry)

    def loss(r, push):
        def one(s, xb, yb, wb, pb):
            return step_loss(objective, r, layers, stack_step(layers, s, xb, pb), yb, wb)
        val, sums = jax.vmap(one)(carry, x, y, w, push)
        return val.sum(), jax.tree.map(lambda a: a.sum(0), sums)
    (_, sums), (g_read, g_push) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(readout, push)
    return g_read, g_push, sums


def _chunk(p, M, c, new, h_in, Js, gs, real):
    """One layer's influence and summed gradient over n steps from what `forward` kept
    ([n, B, ...] each: old carry, unheld new carry, layer input, stage blocks, dL_t/ds_t;
    real [n, B]), M touched once. Per stream and unit the update is linear in M with k x k
    blocks: stage s of step t maps M <- E M + I (E: J on its output rows, the identity on the
    others; a held step: E = 1, I = 0), so

        M_n = Phi M_0 + sum_(t, s) Phi_(n <- t, s) I_(t, s)
        sum_t dL_t/ds_t . V_t = A . M_0 + sum_(t, s) ct_(t, s) . I_(t, s)

    (V_t: M_t had step t not been held, what the gradient of a held step reads). Phi, A and
    the cotangents ct [n, B, k + 1, m, H] (k rows for M_n's components, one for the
    gradient) come from one backward recursion over the n steps on [B, k + 1, k, H] numbers;
    each I term is a vjp of the stage in the parameters at the kept carry (summed over the
    steps, and over the streams for the gradient), never I itself. Then M_n[a] = sum_b
    Phi[a, b] M_0[b] + R[a] and the gradient sum_b A[b] M_0[b] + the vjps: M_0 read twice
    and M_n written once per n steps, where `step` reads M three times and writes it once
    per step."""
    k, H = len(c), c[0].shape[-1]
    B, dt = real.shape[1], c[0].dtype
    stages = stages_of(p, k)
    lam = jnp.concatenate([jnp.eye(k, dtype=dt), jnp.zeros((1, k), dt)])       # [k + 1, k]
    lam = jnp.broadcast_to(lam[None, :, :, None], (B, k + 1, k, H))

    def back(lam, inp):
        Js_t, gs_t, real_t = inp
        mu, nu, cts = lam, gs_t, []          # adjoints of M_t as applied, and of V_t
        keep = real_t.astype(dt)[:, None, None, None]
        for (outs, _), J in reversed(list(zip(stages, Js_t))):        # J [B, m, k, H]
            o = jnp.array(outs)
            cts.append((keep * mu[:, :, o]).at[:, k].add(nu[:, o]))   # [B, k + 1, m, H]
            mu_in = mu.at[:, :, o].set(0.0) + sum(mu[:, :, a, None] * J[:, None, r] for r, a in enumerate(outs))
            mu = jnp.where(real_t[:, None, None, None], mu_in, mu)
            nu = nu.at[:, o].set(0.0) + sum(nu[:, a, None] * J[:, r] for r, a in enumerate(outs))
        return mu.at[:, k].add(nu), tuple(reversed(cts))
    lam, cts = jax.lax.scan(back, lam, (Js, gs, real), reverse=True)

    widths = _widths(p)
    A = {K: _spread(lam[:, k], K) for K in widths}                              # [B, k, K]
    Phi = {K: _spread(lam[:, :k], K) for K in widths}                          # [B, k, k, K]
    g = jax.tree.map(lambda *Ml: _gradient(A[_width(Ml[0])], Ml), *M)

    def f(pp, cc, nn, hh):          # every stage over the leading axes of cc, nn, hh -> per stage its outputs
        def run(ci, ni, hi):
            rec, h1 = _shared_rec(), hi[None]
            nows = stage_carries(p, _one(ci), _one(ni))        # unchanged components: the same arrays
            return tuple(_unone(fn(pp, now, h1, rec)) for (_, fn), now in zip(stages, nows))
        for _ in range(hh.ndim - 1):
            run = jax.vmap(run)
        return run(cc, nn, hh)
    row = lambda cts, a: tuple(tuple(x[..., a, r, :] for r in range(x.shape[-2])) for x in cts)
    _, vjp = jax.vjp(lambda pp: f(pp, c, new, h_in), p)
    g = jax.tree.map(jnp.add, g, vjp(row(cts, k))[0])

    def per_stream(cb, nb, hb, ctb):     # one stream's [n, ...]: its k rows' sums over t
        _, vjp = jax.vjp(lambda pp: f(pp, cb, nb, hb), p)
        return jax.vmap(lambda ca: vjp(row(ca, slice(None)))[0], in_axes=1)(tuple(x[:, :k] for x in ctb))
    Rs = jax.vmap(per_stream, in_axes=1, out_axes=1)(c, new, h_in, cts)       # leaves [k, B, *leaf]
    R = [jax.tree.map(lambda x, a=a: _unit_major(_vjp_layout(x[a], 1)), Rs) for a in range(k)]
    mix = lambda Ra, *Mb, a: sum(_per_unit(Phi[_width(Mb[b])][:, a, b], Mb[b]) for b in range(k)) + Ra
    Mn = tuple(jax.tree.map(lambda Ra, *Mb, a=a: mix(Ra, *Mb, a=a), R[a], *M) for a in range(k))
    return Mn, g


def _shared_rec():
    """A rec (jaxdl.models.cell) that forms h @ wh once per (h, wh) pair of arrays: stages
    that read the same unchanged h (the LSTM's two) share one product, so a vjp in wh sums
    their cotangents first and forms one outer product instead of one per stage."""
    memo = {}

    def rec(h, w):
        key = (id(h), id(w))
        if key not in memo:
            memo[key] = (h, w, h @ w)          # h and w kept: their ids stay theirs
        return memo[key][2]
    return rec


def _gradient(coef, Ms):
    """sum_b sum_a coef[b, a, j] Ms[a][j, b, ...] (coef [B, k, K], `_spread`) for the k
    components' arrays of one leaf of M [K, B, ...] -> the parameter's gradient in its own
    layout: per component one product batched over the K columns, reading M once (no
    [B, p] product written first)."""
    g = sum(jnp.einsum("bj,jb...->j...", coef[:, a], Ma) for a, Ma in enumerate(Ms))       # [K, ...]
    return jnp.moveaxis(g, 0, -1)


def snap1_memory_bytes(layers, streams: int) -> int:
    """Bytes of SnAp-1's influence per member: k x p per stream, in the params' dtype."""
    zero = zero_state(layers)
    return int(streams * sum(len(c) * a.size * a.dtype.itemsize
                             for p, c in zip(layers, zero) for a in jax.tree.leaves(p)))
