"""The Linear Recurrent Unit (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023,
"Resurrecting recurrent neural networks for long sequences", appendix A) as pure functions.

A complex diagonal linear recurrence with an exponential parametrisation and gamma
normalisation, read out by a complex linear map (units u = 1..H, x [B, D]):

    lambda_u = exp(-exp(nu_log_u) + i exp(theta_log_u))          |lambda_u| < 1 always
    h_t      = lambda * h_{t-1} + exp(gamma_log) * (x_t @ (B_re + i B_im))    [B, H] complex
    y_t      = Re(h_t @ (C_re + i C_im)) + D x_t                           [B, H] real

Init (the paper's): |lambda| uniform on the ring [r_min, r_max] (nu_log = log(-log(u1
(r_max^2 - r_min^2) + r_min^2) / 2)), phase uniform on [0, max_phase] (theta_log =
log(max_phase u2)), gamma_log = log(sqrt(1 - |lambda|^2)), B ~ N(0, 1/(2D)),
C ~ N(0, 1/H), D ~ N(0, 1). The feed-through D is the paper's diagonal (d [H], D x = d * x)
when the input is H wide, as in the paper's blocks; the first layer of a stack whose
input is not H wide gets a dense d [D, H] (D x = x @ d), initialised N(0, 1/D).

The complex state is kept as two real arrays, the carry (y, h_re, h_im) [B, H] each: y
is what the next layer and the readout see (Cell.output), the state is h. Checkpoints,
populations and the estimators see real arrays only; the scans turn them into a complex
array inside (complex64 for float32 params, complex128 for float64).

Scans (jaxdl.models.linear_scan): form="sequential" (lax.scan) or "parallel"
(lax.associative_scan), both differentiated by JAX autodiff; a held step (mask 0) holds
h and y. compute_dtype=bfloat16 takes bf16 inputs (f32 accumulation) in the three
products x @ B, h @ C and x @ D; lambda, gamma and the recurrence stay float32 (bf16's
8-bit mantissa cannot hold |lambda| near 1: 0.999 rounds to 1.0).

Element-wise (Cell.elementwise): rec reads nu_log, theta_log, gamma_log, B_re, B_im, each
of whose columns feeds one unit; C and D act only on the current step (emit).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.models.cell import Cell, Elementwise
from jaxdl.models.linear_scan import (carry_reference, check_linear_args, held_gate, hold_outputs,
                                      linear_recurrence)
from jaxdl.models.products import compute_dtype_of, matmul


class LRUParams(NamedTuple):
    nu_log: jax.Array     # [H] log of -log|lambda|
    theta_log: jax.Array  # [H] log of the phase of lambda
    gamma_log: jax.Array  # [H] log of the input normalisation
    b_re: jax.Array       # [D, H] input map, real part
    b_im: jax.Array       # [D, H] input map, imaginary part
    c_re: jax.Array       # [H, H] output map, real part (state unit -> output unit)
    c_im: jax.Array       # [H, H] output map, imaginary part
    d: jax.Array          # [H] feed-through (D = H), or [D, H] (D != H)


RECURRENT = (True, True, True, True, True, False, False, False)


def lru_init(key, in_dim: int, hidden: int, dtype=jnp.float32, r_min: float = 0.0, r_max: float = 1.0,
             max_phase: float = 2 * math.pi) -> LRUParams:
    """The paper's initialisation (module docstring); 0 <= r_min < r_max <= 1, max_phase > 0."""
    if in_dim < 1 or hidden < 1:
        raise ValueError(f"LRU sizes must be >= 1, got in_dim={in_dim}, hidden={hidden}")
    if not 0 <= r_min < r_max <= 1:
        raise ValueError(f"LRU needs 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max} "
                         "(set model.r_min / model.r_max)")
    if not max_phase > 0:
        raise ValueError(f"LRU needs max_phase > 0, got {max_phase} (set model.max_phase)")
    ks = jax.random.split(key, 7)
    u1 = jax.random.uniform(ks[0], (hidden,), dtype)
    u2 = jax.random.uniform(ks[1], (hidden,), dtype, minval=1e-4)   # theta_log = log(0) would be -inf
    nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
    theta_log = jnp.log(max_phase * u2)
    mod = jnp.exp(-jnp.exp(nu_log))
    gamma_log = jnp.log(jnp.sqrt(1 - mod ** 2))
    nb = lambda k, s, scale: jax.random.normal(k, s, dtype) * scale
    b_re = nb(ks[2], (in_dim, hidden), 1 / math.sqrt(2 * in_dim))
    b_im = nb(ks[3], (in_dim, hidden), 1 / math.sqrt(2 * in_dim))
    c_re = nb(ks[4], (hidden, hidden), 1 / math.sqrt(hidden))
    c_im = nb(ks[5], (hidden, hidden), 1 / math.sqrt(hidden))
    d = nb(ks[6], (hidden,), 1.0) if in_dim == hidden else nb(ks[6], (in_dim, hidden), 1 / math.sqrt(in_dim))
    return LRUParams(nu_log, theta_log, gamma_log, b_re, b_im, c_re, c_im, d)


def lru_lambda(params: LRUParams):
    """(Re lambda, Im lambda), each [H]."""
    mod = jnp.exp(-jnp.exp(params.nu_log))
    phase = jnp.exp(params.theta_log)
    return mod * jnp.cos(phase), mod * jnp.sin(phase)


def _input(params, x, cd):
    """exp(gamma_log) * (x @ B): the recurrence's input, (re, im) each [..., H]."""
    g = jnp.exp(params.gamma_log)
    return matmul(x, params.b_re, cd) * g, matmul(x, params.b_im, cd) * g


def _feed(params, x, cd):
    return x * params.d if params.d.ndim == 1 else matmul(x, params.d, cd)


def _read(params, h_re, h_im, x, cd):
    """y = Re(h @ C) + D x."""
    return matmul(h_re, params.c_re, cd) - matmul(h_im, params.c_im, cd) + _feed(params, x, cd)


def _rec(params, state, x, ctx=()):
    """One step of the complex recurrence on (h_re, h_im)."""
    h_re, h_im = state
    l_re, l_im = lru_lambda(params)
    u_re, u_im = _input(params, x, None)
    return l_re * h_re - l_im * h_im + u_re, l_re * h_im + l_im * h_re + u_im


def _emit(params, state, x, ctx=()):
    h_re, h_im = state
    return (_read(params, h_re, h_im, x, None), h_re, h_im)


ELEMENTWISE = Elementwise(split=lambda carry: tuple(carry[1:]), rec=_rec, emit=_emit,
                          recurrent=lambda params: RECURRENT)


def lru_step(params: LRUParams, carry, x, rec=None):
    """One unmasked step (y, h_re, h_im), x [B, D] -> (y', h_re', h_im'). rec is unused
    (the LRU has no dense recurrent product)."""
    return _emit(params, _rec(params, tuple(carry[1:]), x), x)


lru_scan_reference = carry_reference(lru_step)


def lru_scan(params: LRUParams, xs, carry, mask=None, hoist=None, compute_dtype=None, form=None):
    """Run one LRU layer over time: xs [T, B, D], carry (y0, h_re0, h_im0) each [B, H],
    mask [T, B] | None, form "sequential" | "parallel" | "auto"/None ->
    (ys [T, B, H], (yT, h_reT, h_imT)). Differentiable (autodiff) in params, xs and carry."""
    H = params.nu_log.shape[0]
    mask = check_linear_args("LRU", params.b_re.shape[0], H, xs, carry, 3, mask, hoist)
    cd = compute_dtype_of(compute_dtype)
    y0, h_re0, h_im0 = carry
    u_re, u_im = _input(params, xs, cd)                             # [T, B, H]
    l_re, l_im = lru_lambda(params)
    a, b = held_gate(jax.lax.complex(l_re, l_im), jax.lax.complex(u_re, u_im), mask)
    hs = linear_recurrence(a, b, jax.lax.complex(h_re0, h_im0), form)
    h_re, h_im = jnp.real(hs), jnp.imag(hs)
    ys = hold_outputs(_read(params, h_re, h_im, xs, cd), y0, mask)
    return ys, (ys[-1], h_re[-1], h_im[-1])


def _init(key, in_dim, hidden, dtype=jnp.float32, r_min=0.0, r_max=1.0, max_phase=2 * math.pi):
    return lru_init(key, in_dim, hidden, dtype, r_min, r_max, max_phase)


CELL = Cell(
    name="lru", init=_init,
    carry=lambda params, batch: tuple(jnp.zeros((batch, params.nu_log.shape[0]), params.nu_log.dtype)
                                      for _ in range(3)),
    scan=lru_scan, step=lru_step, output=lambda carry: carry[0], reference=lru_scan_reference,
    params=LRUParams, options=("r_min", "r_max", "max_phase"), gates=1,
    forms=("sequential", "parallel"), elementwise=lambda params: ELEMENTWISE)
