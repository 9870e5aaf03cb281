"""An update's cost does not depend on the length of the epoch it belongs to, and an epoch
trained in pieces (the loop's chunks) is the whole epoch, bit for bit.

The cost guard reads XLA's own account of the compiled programs (`cost_analysis()`), so
it times nothing. XLA counts a loop's body once, so a program's count is one update plus
the work the program does once; compiled for a stream 10x longer, only the once-per-program
work over the per-update statistics may grow (a few numbers per update). An update that
copied its batch's stream, as the chunked epoch did before, adds k1 x B x 16 bytes per
update and more, and fails.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.config.schema import EstimatorConfig, OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
from jaxdl.data.batch import Batch, time_rows
from jaxdl.estimators import get_estimator
from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
from jaxdl.objectives import get_objective
from jaxdl.optimizers import optimizers
from jaxdl.tasks.synthetic import EchoConfig, echo
from jaxdl.train.loop import init_members
from jaxdl.train.online_trainer import make_online, online_trainer
from jaxdl.train.tbptt import make_schedule, make_tbptt
from jaxdl.train.tbptt_trainer import tbptt_trainer

STREAMS = 4


def _cost(compiled) -> tuple[float, float]:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    return ca["flops"], ca["bytes accessed"]


def _trainer(kind: str, length: int):
    task = echo(EchoConfig(lag=2, vocab=2, length=length, streams=STREAMS, test_length=20, val_length=0), 0)
    model = RecurrentConfig(hidden=8)
    if kind == "tbptt":
        return tbptt_trainer(task, model, OptimConfig(), TBPTTConfig(k1=5, k2=10), TrainConfig())
    return online_trainer(task, model, optimizers(OptimConfig(), False), EstimatorConfig(name=kind, every=5))


def _costs(kind: str, length: int):
    """(updates per epoch, cost of the epoch program, cost of the chunk program), each compiled
    as the loop compiles it (one member, vmapped, jitted)."""
    tr = _trainer(kind, length)
    state, inputs = jax.eval_shape(lambda: init_members(tr, 0, 1)), tr.epoch_inputs(0)
    epoch = jax.jit(jax.vmap(tr.train_epoch, in_axes=(0, None))).lower(state, inputs).compile()
    chunk = jax.jit(jax.vmap(tr.train_chunk, in_axes=(0, None, None, None))).lower(
        state, inputs, np.int32(0), np.int32(1)).compile()
    return tr.updates_per_epoch, _cost(epoch), _cost(chunk)


@pytest.mark.parametrize("kind", ["tbptt", "snap1"])
def test_an_updates_cost_does_not_grow_with_the_stream(kind):
    """Streams of 200 and 2,000 steps (40 and 400 updates): per added update, the programs
    grow by at most 8 flops and 64 bytes (16 float32: the statistics of an update written
    and reduced once), for the whole epoch and the chunk. One copy of an update's batch
    would be 5 steps x 4 streams x 16 bytes = 320 bytes."""
    (s1, e1, c1), (s2, e2, c2) = _costs(kind, 200), _costs(kind, 2000)
    assert (s1, s2) == (40, 400)
    for name, a, b in (("epoch", e1, e2), ("chunk", c1, c2)):
        flops, nbytes = ((y - x) / (s2 - s1) for x, y in zip(a, b))
        assert flops <= 8, f"{kind} {name}: {flops:.1f} more flops per added update ({a} -> {b})"
        assert nbytes <= 64, f"{kind} {name}: {nbytes:.1f} more bytes per added update ({a} -> {b})"


def test_time_rows_reads_any_rows_with_zeros_outside():
    a = jnp.arange(2 * 7 * 3).reshape(2, 7, 3)
    ref = np.concatenate([np.zeros((20, 3), int), np.asarray(a[1]), np.zeros((40, 3), int)])
    for start in (-12, -4, -1, 0, 2, 4, 5, 6, 9, 30):
        for size in (1, 4, 7, 9):
            got = jax.jit(time_rows, static_argnums=3)(a, 1, start, size)
            np.testing.assert_array_equal(got, ref[20 + start:20 + start + size], err_msg=f"{start}, {size}")


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _in_pieces(run_updates, params, opt_state, state, batches, total, cuts):
    """run_updates over [0, c1), [c1, c2), ..., [ck, total), the statistics of each piece
    added into one array per update (each piece's are zero outside it)."""
    fn = jax.jit(run_updates)
    stats = None
    for a, b in zip((0,) + cuts, cuts + (total,)):
        params, opt_state, state, out = fn(params, opt_state, state, batches, np.int32(a), np.int32(b - a))
        stats = out if stats is None else jax.tree.map(jnp.add, stats, out)
    return params, opt_state, state, stats


def _stream(N, T, key=0):
    kx, ky = jax.random.split(jax.random.PRNGKey(key))
    x = jax.random.normal(kx, (N, T, 2, 3))
    y = jax.random.normal(ky, (N, T, 2, 2))
    mask = jnp.ones((N, T, 2)).at[:, -2:, 1].set(0.0)            # a ragged stream
    return Batch(x, y, mask, mask)


def _mse(preds, y):
    return {"loss": ((preds - y) ** 2).mean(-1)}


@pytest.mark.parametrize("k1,k2,reset", [(2, 5, "batch"), (5, 2, "never"), (4, 9, "epoch")])
def test_tbptt_pieces_equal_the_whole_epoch_bit_for_bit(k1, k2, reset):
    """Two batches of 7 steps, a ragged end, k1 < k2, k1 > k2 and a window longer than a batch
    whose tail outlasts an update (k2=9), a nonzero starting state and tail: the pieces end
    with the params, optimizer state, recurrent state, tail and per-update statistics of
    run_epoch, bit for bit."""
    N, T = 2, 7
    params = rnn_init(jax.random.PRNGKey(1), 3, 4, 2)
    opt = optax.adam(0.05)
    eng = make_tbptt(lambda p, x, c, m: rnn_apply(p, x, c, m), _mse, opt, rnn_carry, make_schedule(T, k1, k2),
                     reset=reset)
    batches = _stream(N, T)
    carry, tail = eng.fresh_state(params, jax.tree.map(lambda a: a[0], batches))
    carry = jax.tree.map(lambda a: a + 0.3, carry)
    tail = jax.tree.map(lambda a: a + 1.0, tail)
    S = N * eng.schedule.updates
    whole = jax.jit(eng.run_epoch)(params, opt.init(params), (carry, tail), batches)
    pieces = _in_pieces(eng.run_updates, params, opt.init(params), (carry, tail), batches, S, (1, S // 2, S - 1))
    _assert_same(whole[:3], pieces[:3])
    _assert_same(jax.tree.map(lambda a: a.reshape(-1), whole[3]), pieces[3])


@pytest.mark.parametrize("reset", ["epoch", "batch"])
def test_online_pieces_equal_the_whole_epoch_bit_for_bit(reset):
    """SnAp-1 over two batches of 13 steps, 5 steps per update (a ragged end): the pieces end
    where run_epoch ends, bit for bit, statistics included."""
    task = echo(EchoConfig(lag=2, vocab=2, length=26, streams=2, test_length=20, val_length=0), 0)
    batches = jax.tree.map(lambda a: jnp.asarray(a).reshape((2, 13) + a.shape[2:]), task.train)
    params = rnn_init(jax.random.PRNGKey(0), 2, 4, 2)
    est = get_estimator("snap1", get_objective(task.loss))
    opt = optax.adam(0.05)
    eng = make_online(est, opt, 13, 5, reset, lambda x: x)
    seq = (rnn_carry(params, 2), est.init(params, 2, jax.random.PRNGKey(2)))
    S = 2 * eng.updates
    assert S == 6
    whole = jax.jit(eng.run_epoch)(params, opt.init(params), seq, batches)
    pieces = _in_pieces(eng.run_updates, params, opt.init(params), seq, batches, S, (2, 3))
    _assert_same(whole[:3], pieces[:3])
    _assert_same(jax.tree.map(lambda a: a.reshape(-1), whole[3]), pieces[3])
