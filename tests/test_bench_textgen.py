"""textgen's default recipe (conf/task/textgen.yaml, docs/performance.md): where its val
block sits in the text, and (slow) that the default run ends at test bpc <= 2.2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxdl.tasks.text import TextgenConfig, textgen
from tests.helpers import ROOT


def _ids(batch):
    """A split's streams [1, T, B] back to its characters in text order (stream b holds
    the b-th contiguous piece)."""
    return np.asarray(batch.x[0]).T.reshape(-1)


@pytest.mark.parametrize("val_at", ["start", "before_test"])
def test_val_block_sits_where_val_at_says(tmp_path, val_at):
    f = tmp_path / "t.txt"
    text = "".join(np.random.default_rng(0).choice(list("abcdefghijklmnopqrstuvwxyz"), 4000))   # 40-char windows unique
    f.write_text(text)
    task = textgen(TextgenConfig(path=str(f), max_chars=0, streams=4, test_fraction=0.1, val_fraction=0.05,
                                 val_at=val_at), 0)
    start = lambda b: text.index("".join(task.vocab[i] for i in _ids(b)[:40]))   # where a split begins
    n_test, n_val = int(len(text) * 0.1), int(len(text) * 0.05)
    assert start(task.test) == len(text) - n_test                          # test: the text's last part
    if val_at == "start":
        assert (start(task.val), start(task.train)) == (0, n_val)          # val first, then train up to test
    else:
        assert (start(task.train), start(task.val)) == (0, len(text) - n_test - n_val)
    ends = start(task.train) + task.train.x.shape[1] * task.train.x.shape[2]
    assert ends <= (len(text) - n_test if val_at == "start" else len(text) - n_test - n_val)


def test_a_wrong_val_at_is_refused(tmp_path):
    from jaxdl.config import ConfigError
    from jaxdl.configure import parse
    from tests.helpers import compose_cfg
    ov = ["task=textgen", "task.val_at=middle"]
    with pytest.raises(ConfigError, match="val_at"):
        parse(compose_cfg(ov), ov)


@pytest.mark.slow
def test_the_default_recipe_ends_under_2_2_bits_per_char(tmp_path, shared_data):
    """The whole default run (about 100 s of training on 2 loaded cores)."""
    env = {**os.environ, "WANDB_MODE": "offline", "JAXDL_DATA": str(shared_data)}
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", "task=textgen", "train.progress=false",
                        f"hydra.run.dir={tmp_path}/r"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["test/bpc"] <= 2.2, rows[-1]
    assert abs(rows[-1]["test/bpc"] - rows[-2]["test/bpc"]) < 0.05, rows[-2:]   # the curve has flattened
