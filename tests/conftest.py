import os
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The config's data_dir is $JAXDL_DATA, else data/ in the repo; the tests (and the Hydra runs they
# start in subprocesses) read the shared data beside the repo unless JAXDL_DATA says otherwise.
os.environ.setdefault("JAXDL_DATA", str(ROOT.parent / "shared" / "data"))
# Many tests (and the runs they start in subprocesses) compile the same small programs: JAX's
# persistent compilation cache, one per test session and shared by the xdist workers and the
# subprocesses (they inherit the variables), compiles each once. It changes no result.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"solo-{os.getpid()}")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"jaxdl-test-cache-{run_id}")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


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
