"""JAX's persistent compilation cache for search runs: a population (random, halving,
PBT) and every Optuna sweep trial keep their compiled programs on disk, so halving's rung
programs (one per member count) and trials of an already seen shape load instead of
compiling, across rungs, seeds, trials and relaunches.

    JAXDL_COMPILE_CACHE=<dir>   where (default: $XDG_CACHE_HOME or ~/.cache, then jaxdl/xla)
    JAXDL_COMPILE_CACHE=off     no cache (every program compiles, as before)

Programs that took at least MIN_SECONDS to compile are written; a cached program is the
same executable XLA would compile (results are unchanged, bit for bit)."""
from __future__ import annotations

import os
from pathlib import Path

ENV = "JAXDL_COMPILE_CACHE"
MIN_SECONDS = 0.3


def where() -> Path | None:
    """The cache directory JAXDL_COMPILE_CACHE asks for, or None (off)."""
    v = os.environ.get(ENV, "")
    if v.lower() in ("off", "0", "none", "false"):
        return None
    if v:
        return Path(v)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxdl" / "xla"


def enable() -> str | None:
    """Turn the cache on for this process (before the run's programs compile); its path, or None."""
    import jax
    path = where()
    if path is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != str(path):
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_SECONDS)
        from jax._src import compilation_cache
        if compilation_cache.is_initialized():     # a program compiled before (e.g. the mesh check)
            compilation_cache.reset_cache()
    return str(path)
