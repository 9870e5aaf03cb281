import os
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The config's data_dir is $JAXDL_DATA, else data/ in the repo; the tests (and the Hydra runs they
# start in subprocesses) read the shared data beside the repo unless JAXDL_DATA says otherwise.
os.environ.setdefault("JAXDL_DATA", str(ROOT.parent / "shared" / "data"))


@pytest.fixture
def x64():
    """Run a test in float64 (gradient checks), restoring the previous setting after."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def data_dir() -> Path:
    """The shared data folder: $JAXDL_DATA or ../shared/data beside the repo."""
    return Path(os.environ.get("JAXDL_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data not found at {d}; set JAXDL_DATA to the folder holding mnist/ and tinyshakespeare/")
    return d


@pytest.fixture(autouse=True)
def exact_f32_matmuls():
    """Tests compare numbers: on GPUs, JAX's default f32 matmul uses TF32 (about 1e-3
    relative), so ask for full precision. No effect on the CPU."""
    with jax.default_matmul_precision("highest"):
        yield
