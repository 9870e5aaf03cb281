"""The matrix products every cell and the readout share, with the mixed-precision rule
(compute dtype None: the operands' dtype; bfloat16: bf16 inputs, float32 accumulation):

    matmul(a [..., K], w [K, N]) -> [..., N]
    matmul_weight_left(a [B, K], w_t [N, K]) -> [B, N]      a @ w_t^T, run as (w_t @ a^T)^T
    step_matmul(w [K, N], cd) -> (a [B, K] -> [B, N])       a loop's per-step a @ w, in the faster form
    contract_lead(a [..., M], b [..., N]) -> [M, N]        sum over every leading axis
    member_matmul(a [P, ..., K], w [P, K, N]) -> [P, ..., N]     one product per member
    member_contract(a [P, ..., M], b [P, ..., N]) -> [P, M, N]   contract_lead per member

The member forms keep a population's member axis P leading (batch dimension 0 of one
dot_general), the layout XLA's batched dot reads without a transpose (jaxdl.models.lstm's
member rule).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp


def default_hoist() -> bool:
    """Hoist the input projection out of the loop on accelerators, keep it inside on CPU
    (measured in experiments/bench_lstm.py: on 2 CPU cores the per-step matmul wins)."""
    return jax.default_backend() != "cpu"


COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype_of(name):
    """'float32' | 'bfloat16' | a dtype | None -> the matmul input dtype, or None for
    no casting (float32 means no casting: the parameters' own dtype is used)."""
    if name is None:
        return None
    d = jnp.dtype(name)
    if d == jnp.float32:
        return None
    if d != jnp.bfloat16:
        raise ValueError(f"compute dtype must be one of {COMPUTE_DTYPES}, got {name!r} "
                         "(set model.dtype=float32 or model.dtype=bfloat16)")
    return d


def matmul(a, w, cd):
    """a [..., K] @ w [K, N]. cd None: in the operands' dtype; cd bf16: bf16 inputs,
    accumulated and returned in float32 (float64 where a is float64)."""
    if cd is None:
        return a @ w
    acc = jnp.result_type(a.dtype, jnp.float32)
    if jax.default_backend() == "cpu":
        # XLA's CPU dot has no BF16 x BF16 -> F32 kernel for every shape ("Unsupported element
        # type for DotThunk"). Products of bf16 values are exact in f32, so rounding the inputs
        # to bf16 and multiplying in f32 computes the same thing.
        return jnp.matmul(a.astype(cd).astype(acc), w.astype(cd).astype(acc))
    return jnp.matmul(a.astype(cd), w.astype(cd), preferred_element_type=acc)


# From this hidden size on (the smaller of K and N of a per-step [B, K] x [K, N] recurrent
# product), the CPU runs it weight-left (matmul_weight_left); experiments/recurrent_products.py
# measures both forms.
WEIGHT_LEFT_MIN = 256


def weight_left(k: int, n: int) -> bool:
    """Whether a per-step [B, K] x [K, N] product with small B runs weight-left: on the CPU
    when both K and N are at least WEIGHT_LEFT_MIN (an LSTM's [H, 4H] weight: H >= 256).
    From there XLA:CPU's [B, K] x [K, N] product with B = 32 rows runs at 0.4-0.9x the
    GFLOP/s of the same product written [N, K] x [K, B] (one core: 67 against 161 GFLOP/s
    at H = 1024); below it the plain form is as fast or faster (docs/performance.md,
    "Per-step products")."""
    return jax.default_backend() == "cpu" and min(k, n) >= WEIGHT_LEFT_MIN


def matmul_weight_left(a, w_t, cd):
    """a [B, K] @ w [K, N] computed as (w_t [N, K] @ a^T [K, B])^T, w_t = w^T formed once by
    the caller (outside a loop): the same numbers with the weight as the left operand and
    the small dimension last. The operand a^T and the [N, B] product sit behind optimization
    barriers: XLA's simplifier would otherwise fold either transpose into the dot's dimension
    numbers and run a form as slow as a @ w ([B, K] x [N, K]^T, or a^T's rows contracted
    against w_t with the [B, N] result)."""
    a_t = jax.lax.optimization_barrier(a.T)
    return jax.lax.optimization_barrier(matmul(w_t, a_t, cd)).T


def step_matmul(w, cd):
    """a [B, K] -> a @ w [K, N] for a loop's per-step product: weight-left where
    weight_left(K, N) (w^T formed here, once, outside the loop), else matmul."""
    if weight_left(*w.shape):
        return partial(matmul_weight_left, w_t=w.T, cd=cd)
    return partial(matmul, w=w, cd=cd)


def contract_lead(a, b, cd):
    """sum over the leading axes of a [..., M] and b [..., N] -> [M, N], e.g. over time and
    batch: sum_{t,b} a[t, b, :]^T b[t, b, :] (einsum "tbm,tbn->mn"), with matmul's dtype
    rule (cd None: the operands' dtype; cd bf16: bf16 inputs, float32 accumulation).
    One dot_general contracting dims (0, ..., n-2) in order: on one device the operands
    are read as [T*B, M] without a copy (jnp.einsum orders them (b, t), which costs a
    transpose); split along B on a mesh, each device contracts its own rows and only
    the [M, N] partial sums are all-reduced."""
    lead = tuple(range(a.ndim - 1))
    return _dot(a, b, ((lead, lead), ((), ())), cd)


def _dot(a, b, dims, cd):
    """dot_general(a, b, dims) with the compute-dtype rule of matmul."""
    if cd is None:
        return jax.lax.dot_general(a, b, dims)
    acc = jnp.result_type(a.dtype, jnp.float32)
    if jax.default_backend() == "cpu":   # see matmul: bf16-rounded inputs, f32 product
        return jax.lax.dot_general(a.astype(cd).astype(acc), b.astype(cd).astype(acc), dims)
    return jax.lax.dot_general(a.astype(cd), b.astype(cd), dims, preferred_element_type=acc)


def member_matmul(a, w, cd):
    """a [P, ..., K] @ w [P, K, N] -> [P, ..., N]: member p's rows times member p's weights."""
    return _dot(a, w, (((a.ndim - 1,), (1,)), ((0,), (0,))), cd)


def member_contract(a, b, cd):
    """a [P, ..., M], b [P, ..., N] -> [P, M, N]: for every member p, the sum over the
    other leading axes of a[p, ...]^T b[p, ...] (contract_lead per member). With the
    member axis leading, each member's rows are one contiguous [T*B, M] block."""
    lead = tuple(range(1, a.ndim - 1))
    return _dot(a, b, ((lead, lead), ((0,), (0,))), cd)
