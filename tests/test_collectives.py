"""The data axis without activation gathers: a compiled echo epoch with mesh.data=4 has no
all-gather (or any other collective that moves activations) inside its loops, only the
all-reduce of each update's gradient and loss sums, and no collective at all inside the
time loops of the LSTM.

The weight gradients and the readout contract over time and batch with T and B kept as
separate axes (jaxdl.models.products.contract_lead); a [T*B, ...] reshape of a B-split array
makes XLA all-gather it inside every update. The negative control compiles the same epoch
with a readout that flattens [T, B] and must show those gathers: the counter sees them.

Forced CPU devices need XLA_FLAGS before JAX starts, so the compile runs in a subprocess:
`python -m tests.test_collectives [variant...]` prints the counts as JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jaxdl.run.mesh import COLLECTIVES as OPS, loop_collectives
from tests.helpers import ROOT

MOVERS = ("all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def _flat_dense(params, x):
    """A readout that flattens [T, B] into one matmul axis (the negative control)."""
    lead = x.shape[:-1]
    return (x.reshape(-1, x.shape[-1]) @ params["w"] + params["b"]).reshape(*lead, -1)


def _worker(variants: list[str]) -> dict:
    """Compile the echo epoch (train_loop's program: vmap over members, Placement.jit_epoch)
    on a 1 x 4 mesh for each variant: default (this backend's hoist), hoist, bf16, and
    flat (the readout flattening [T, B])."""
    import jax

    import jaxdl.models.rnn as rnn
    from jaxdl.config.schema import OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
    from jaxdl.run.mesh import Placement, make_mesh
    from jaxdl.tasks.synthetic import EchoConfig, echo
    from jaxdl.train.loop import init_members
    from jaxdl.train.tbptt_trainer import tbptt_trainer

    assert jax.device_count() == 4, jax.devices()
    task = echo(EchoConfig(lag=4, length=120, streams=8, test_length=40, val_length=0), 0)
    out = {}
    for v in variants:
        kw = {"hoist": True} if v == "hoist" else {"dtype": "bfloat16"} if v == "bf16" else {}
        keep = rnn.dense_apply
        if v == "flat":
            rnn.dense_apply = _flat_dense
        try:
            trainer = tbptt_trainer(task, RecurrentConfig(hidden=16, **kw), OptimConfig(), TBPTTConfig(k1=10, k2=20),
                                    TrainConfig())
            pl = Placement(make_mesh(1, 4))
            state = pl.state(init_members(trainer, 0, 2))
            inputs = pl.inputs(trainer.epoch_inputs(0), trainer.data_axes)
            text = pl.jit_epoch(jax.vmap(trainer.train_epoch, in_axes=(0, None))).lower(state, inputs).compile()
            out[v] = loop_collectives(text.as_text())
        finally:
            rnn.dense_apply = keep
    return out


def compile_counts(*variants: str) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    p = subprocess.run([sys.executable, "-m", "tests.test_collectives", *variants], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _assert_no_activation_gathers(c: dict) -> None:
    assert c["loop_count"] >= 2 and c["innermost_count"] >= 1, c       # the update loop and the time loops
    assert all(c["innermost"][op] == 0 for op in OPS), c                # a time step communicates nothing
    assert all(c["loops"][op] == 0 for op in MOVERS), c                 # no activation moves in any loop
    # the gradient (and loss-sum) all-reduce of each update: the streams really are split
    assert 1 <= c["loops"]["all-reduce"] <= 4, c


def test_echo_epoch_on_the_data_axis_has_no_gathers_in_its_loops():
    counts = compile_counts("default", "flat")
    _assert_no_activation_gathers(counts["default"])
    # the control: flattening [T, B] in the readout makes XLA gather the activations in the loop
    assert counts["flat"]["loops"]["all-gather"] >= 1, counts["flat"]


@pytest.mark.slow
def test_hoisted_and_bf16_epochs_have_no_gathers_in_their_loops():
    counts = compile_counts("hoist", "bf16")
    for v in ("hoist", "bf16"):
        _assert_no_activation_gathers(counts[v])


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1:] or ["default"])))
