"""Shared helpers for tests that compose the real Hydra config."""
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
TINY_ECHO = ["task.length=200", "task.streams=4", "task.test_length=200", "model.hidden=16",
             "train.progress=false"]


def compose_cfg(overrides=()):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)
    return cfg


def run_inprocess(tmp_path, overrides=(), name="t"):
    from jaxdl.configure import parse
    from jaxdl.main import run
    overrides = list(overrides)
    config = parse(compose_cfg(overrides), overrides)
    run_dir = Path(tmp_path) / name
    return run(config, run_dir, overrides, None, name), run_dir
