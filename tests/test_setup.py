"""Set-up: the accelerator launch.sh picks, `./launch.sh doctor`, the committed lock, a fresh
locked install, run provenance, and the defaults a newcomer expects (natural models, the data
directory, the missing-data errors, TFDS through its own mock)."""
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxdl.setup import accel, lockfile
from tests.helpers import compose_cfg, run_inprocess

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
QUIET = ["logger.mode=disabled", "train.progress=false"]


def _fake_nvidia_smi(tmp_path, driver: str | None, exit_code: int = 0) -> Path:
    """A directory holding an `nvidia-smi` that answers like the real one for `driver`."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    exe = d / "nvidia-smi"
    body = f'echo "{driver}, NVIDIA H100 80GB HBM3"' if driver else \
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."'
    exe.write_text(f"#!/bin/sh\n{body}\nexit {exit_code}\n")
    exe.chmod(0o755)
    return d


def _env(path_dirs=(), **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JAXDL_ACCEL", "JAXDL_UNLOCKED", "JAXDL_INSTALLER")}
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), env.get("PATH", "")])
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _doctor(env, venv=VENV) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "launch.sh"), "doctor"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**env, "JAXDL_VENV": str(venv)})


# ---------------------------------------------------------------- the accelerator

@pytest.mark.parametrize("driver,want", [("580.65.06", "cuda13"), ("590.12", "cuda13"), ("550.54.15", "cuda12")])
def test_driver_version_picks_the_cuda_build(tmp_path, driver, want):
    env = _env([_fake_nvidia_smi(tmp_path, driver)])
    a = accel.detect(env, pci_root=str(tmp_path / "nopci"))
    assert a.name == want and f"driver {driver}" in a.reason and a.extra == f"jax[{want}]"
    # launch.sh asks the same function (python -m jaxdl.setup.accel) what to install
    p = subprocess.run([sys.executable, "-m", "jaxdl.setup.accel"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == want


def test_no_gpu_a_broken_driver_and_tpus(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    a = accel.detect({"PATH": str(empty)}, pci_root=str(tmp_path / "nopci"))
    assert a.name == "cpu" and "no nvidia-smi" in a.reason and a.extra == "jax"
    broken = accel.detect(_env([_fake_nvidia_smi(tmp_path, None, exit_code=9)]), pci_root=str(tmp_path / "nopci"))
    assert broken.name == "cpu" and "exit 9" in broken.reason and "communicate" in broken.warning
    old = accel.detect(_env([_fake_nvidia_smi(tmp_path, "470.57.02")]), pci_root=str(tmp_path / "nopci"))
    assert old.name == "cuda12" and "older than 525" in old.warning
    pci = tmp_path / "pci"
    for dev, (vendor, device) in {"0000:00:04.0": ("0x1ae0", "0x0042"),       # Google's gVNIC: not a TPU
                                  "0000:00:05.0": ("0x1ae0", "0x0063"),       # TPU v5e
                                  "0000:00:06.0": ("0x1ae0", "0x0063")}.items():
        (pci / dev).mkdir(parents=True)
        (pci / dev / "vendor").write_text(vendor + "\n")
        (pci / dev / "device").write_text(device + "\n")
    t = accel.detect({"PATH": str(empty)}, pci_root=str(pci))
    assert t.name == "tpu" and "2 TPU v5e chip(s)" in t.reason and t.extra == "jax[tpu]"
    (pci / "0000:00:05.0" / "device").write_text("0x0042\n")
    (pci / "0000:00:06.0" / "device").write_text("0x0042\n")
    assert accel.detect({"PATH": str(empty)}, pci_root=str(pci)).name == "cpu"


def test_jaxdl_accel_overrides_detection(tmp_path):
    env = _env([_fake_nvidia_smi(tmp_path, "580.65.06")])
    assert accel.detect({**env, "JAXDL_ACCEL": "cpu"}).name == "cpu"
    assert accel.detect({**env, "JAXDL_ACCEL": "tpu"}).reason == "JAXDL_ACCEL=tpu"
    with pytest.raises(accel.AccelError, match="JAXDL_ACCEL='rocm' is not one of cpu|cuda12|cuda13|tpu"):
        accel.detect({**env, "JAXDL_ACCEL": "rocm"})


# ---------------------------------------------------------------- doctor

def _tree(venv: Path) -> dict:
    """Every file of the venv (bytecode caches aside, which other test runs may write) -> (size, mtime)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(venv):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for f in filenames:
            st = os.lstat(os.path.join(dirpath, f))
            out[os.path.relpath(os.path.join(dirpath, f), venv)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("driver,extra", [("580.65.06", "jax[cuda13]"), ("550.54.15", "jax[cuda12]")])
def test_doctor_names_the_build_for_the_driver(tmp_path, driver, extra):
    p = _doctor(_env([_fake_nvidia_smi(tmp_path, driver)]))
    assert f"nvidia-smi: driver {driver}" in p.stdout and f"jax build    {extra}" in p.stdout, p.stdout
    assert f"requirements/{extra[4:-1]}.txt" in p.stdout
    # the venv running these tests holds the CPU build: doctor says ./launch.sh would change that
    assert "the venv holds the CPU build; ./launch.sh installs " + extra in p.stdout
    assert p.returncode == 0, p.stdout + p.stderr


def test_doctor_with_jaxdl_accel_cpu_installs_nothing(tmp_path):
    before = _tree(VENV)
    env = _env([_fake_nvidia_smi(tmp_path, "580.65.06")], JAXDL_ACCEL="cpu", JAXDL_DATA=tmp_path / "data")
    p = _doctor(env)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "accelerator  cpu: JAXDL_ACCEL=cpu" in out and "jax build    jax (the CPU build)" in out
    import jax
    assert f"jax          {jax.__version__} (jaxlib" in out and "backend cpu" in out and "cpu:cpu" in out
    assert f"python       {sys.version.split()[0]} at " in out
    assert "requirements/lock.txt (" in out and "[doctor] ready" in out
    # the data dir and the datasets it lacks, with both ways to get them
    assert f"data dir     {tmp_path / 'data'} (JAXDL_DATA) - does not exist" in out
    assert "mnist: no IDX files" in out and "task.source=tfds" in out and "train-images-idx3-ubyte" in out
    assert "tinyshakespeare: no " in out
    assert "logger.mode=offline" in out and "API key not configured" in out
    assert "[launch]" not in p.stderr                  # no set-up ran
    assert _tree(VENV) == before                       # nothing installed, removed or rewritten
    # a venv that does not exist yet is not created
    p = _doctor(env, venv=tmp_path / "novenv")
    assert p.returncode == 0 and "not created yet" in p.stdout and not (tmp_path / "novenv").exists()


def test_doctor_finds_the_data_and_never_prints_the_key(tmp_path, shared_data):
    secret = "0123456789abcdef0123456789abcdef01234567"
    p = _doctor(_env(JAXDL_DATA=shared_data, WANDB_API_KEY=secret))
    assert p.returncode == 0
    assert f"mnist: found, the 4 IDX files in {shared_data / 'mnist'}" in p.stdout
    assert "tinyshakespeare: found" in p.stdout
    assert "API key configured (WANDB_API_KEY is set)" in p.stdout
    assert secret not in p.stdout + p.stderr


def test_doctor_fails_on_a_stale_lock_and_a_bad_accelerator(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "multirun", "wandb",
                                                              "__pycache__", "experiments", "tests"))
    pp = repo / "pyproject.toml"
    pp.write_text(pp.read_text().replace('"tqdm>=4.66",', '"tqdm>=4.66",\n  "rich>=13",'))
    p = subprocess.run([sys.executable, "-m", "jaxdl.doctor"], cwd=repo, capture_output=True, text=True,
                       timeout=120, env={**_env(), "JAXDL_VENV": str(VENV)})
    assert p.returncode == 1 and "pyproject.toml's dependencies changed" in p.stdout and "./launch.sh lock" in p.stdout
    p = _doctor(_env(JAXDL_ACCEL="rocm"))
    assert p.returncode == 1 and "JAXDL_ACCEL='rocm'" in p.stdout


# ---------------------------------------------------------------- the lock

def test_the_lock_pins_every_runtime_and_test_package_with_hashes():
    assert lockfile.stale_reason() is None, "run ./launch.sh lock and commit requirements/"
    pins, hashes = lockfile.pins(lockfile.LOCK), lockfile.hashes(lockfile.LOCK)
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    from packaging.requirements import Requirement
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        r = Requirement(req)
        name = lockfile.normalize(r.name)
        assert name in pins and r.specifier.contains(pins[name][0]), req
    assert "hydra-submitit-launcher" in pins and "jaxlib" in pins
    assert all(hashes[n] and all(h.startswith("sha256:") for h in hashes[n]) for n in pins)
    assert "torch" not in pins                           # the bench extra is not locked
    assert "--hash" not in lockfile.constraints(lockfile.LOCK) and "jax==" in lockfile.constraints(lockfile.LOCK)


def test_accelerator_files_add_only_the_accelerator_packages():
    base = lockfile.pins(lockfile.LOCK)
    jax = base["jax"][0]
    for a, core in (("cuda12", "jax-cuda12-plugin"), ("cuda13", "jax-cuda13-plugin"), ("tpu", "libtpu")):
        over = lockfile.overlay(a)
        pins, hashes = lockfile.pins(over), lockfile.hashes(over)
        assert core in pins and not set(pins) & set(base), a     # everything else keeps lock.txt's version
        assert all(hashes[n] for n in pins), a
        assert f"jax[{a}]=={jax}" in over.read_text()
        if a != "tpu":
            assert pins[core][0] == jax and pins[f"jax-{a}-pjrt"][0] == jax


def test_this_environment_is_the_lock_when_launch_sh_installed_it():
    stamp = lockfile.read_stamp(VENV)
    if stamp.get("key") != lockfile.install_key("locked", stamp.get("accel", "?")):
        pytest.skip(f"{VENV} was not installed from this lock by ./launch.sh")
    assert lockfile.mismatches(lockfile.LOCK, lockfile.overlay(stamp["accel"])) == []


def _uv() -> str | None:
    launch = (ROOT / "launch.sh").read_text()
    version = launch.split('UV_VERSION="', 1)[1].split('"', 1)[0]
    uv = os.environ.get("JAXDL_UV") or str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                           / "jaxdl" / f"uv-{version}" / "bin" / "uv")
    return uv if os.access(uv, os.X_OK) else None


def test_a_fresh_locked_install_is_the_lock_and_is_not_repeated(tmp_path):
    """A new venv from the lock (uv, from its package cache), a second launch that installs nothing,
    and a stamp from another accelerator that makes launch.sh install only what differs."""
    if _uv() is None:
        pytest.skip("uv has not been fetched on this machine (./launch.sh fetches it)")
    venv = tmp_path / "venv"
    env = _env([], JAXDL_VENV=venv, JAXDL_ACCEL="cpu")
    check = ("from jaxdl.setup import lockfile; import jaxdl, sys; "
             "print(lockfile.mismatches(lockfile.LOCK, None), jaxdl.__file__)")
    p = subprocess.run(["bash", str(ROOT / "launch.sh"), "py", "-c", check], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "installing the locked environment: requirements/lock.txt (cpu, uv)" in p.stderr
    assert "Editable installation" not in p.stderr and "WARNING" not in p.stderr, p.stderr
    assert p.stdout.strip() == f"[] {ROOT / 'jaxdl' / '__init__.py'}"      # exactly the lock; jaxdl editable
    stamp = lockfile.read_stamp(venv)
    assert stamp["accel"] == "cpu" and stamp["mode"] == "locked" and stamp["installer"] == "uv"
    assert stamp["lock_sha256"] == hashlib.sha256(lockfile.LOCK.read_bytes()).hexdigest()
    p = subprocess.run(["bash", str(ROOT / "launch.sh"), "py", "-c", "pass"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "[launch]" not in p.stderr                # nothing changed: nothing installed
    # as if the venv held the cuda12 build: the next CPU launch installs what differs (here: nothing to add)
    (venv / ".jaxdl-installed").write_text(
        (venv / ".jaxdl-installed").read_text().replace("accel=cpu", "accel=cuda12").replace("key=locked cpu", "key=locked cuda12"))
    p = subprocess.run(["bash", str(ROOT / "launch.sh"), "py", "-c", check], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "accelerator cuda12 -> cpu: installing the packages that differ" in p.stderr
    assert p.stdout.startswith("[] ") and lockfile.read_stamp(venv)["accel"] == "cpu"


# ---------------------------------------------------------------- provenance

def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_provenance_names_this_commit_and_the_environment(tmp_path):
    from jaxdl.run.provenance import provenance
    t0 = dt.datetime.now(dt.timezone.utc)
    p = provenance(["task=echo", "seed=3"], run_dir=tmp_path)
    assert p["git"]["commit"] == _git(ROOT, "rev-parse", "HEAD").strip()
    dirty = bool(_git(ROOT, "status", "--porcelain", "--untracked-files=no").strip())
    assert p["git"]["dirty"] is dirty and (tmp_path / "git.diff").exists() is dirty
    assert p["lock"]["file"] == "requirements/lock.txt"
    assert p["lock"]["sha256"] == hashlib.sha256(lockfile.LOCK.read_bytes()).hexdigest()
    import flax
    import jax
    v = p["versions"]
    assert v["python"] == sys.version.split()[0] and v["jax"] == jax.__version__ and v["flax"] == flax.__version__
    for k in ("jaxlib", "optax", "orbax-checkpoint", "hydra-core", "wandb"):
        assert v[k] and v[k][0].isdigit(), k
    assert p["backend"] == "cpu" and p["device_kinds"] == ["cpu:cpu"]
    assert p["host"] and p["overrides"] == ["task=echo", "seed=3"]
    start = dt.datetime.fromisoformat(p["start_utc"])
    assert start.utcoffset() == dt.timedelta(0) and start <= t0 + dt.timedelta(seconds=1)


def test_dirty_flag_both_ways_and_the_diff(tmp_path):
    from jaxdl.run.provenance import git_state
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    run = tmp_path / "run"
    clean = git_state(repo, run)
    assert clean == {"commit": _git(repo, "rev-parse", "HEAD").strip(), "dirty": False}
    (repo / "notes.txt").write_text("untracked files do not make the tree dirty\n")
    assert git_state(repo, run)["dirty"] is False and not (run / "git.diff").exists()
    (repo / "a.py").write_text("x = 2\n")
    dirty = git_state(repo, run)
    assert dirty["dirty"] is True and dirty["diff"] == "git.diff"
    diff = (run / "git.diff").read_text()
    assert "-x = 1" in diff and "+x = 2" in diff
    assert git_state(tmp_path / "nogit")["commit"] is None


def test_summary_json_records_the_provenance(tmp_path):
    from tests.helpers import TINY_ECHO
    env = {**os.environ, "WANDB_MODE": "disabled"}
    overrides = TINY_ECHO + ["train.epochs=1", "logger.mode=disabled", "seed=4"]
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", *overrides, f"hydra.run.dir={tmp_path}/r"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    prov = s["provenance"]
    assert prov["git"]["commit"] == _git(ROOT, "rev-parse", "HEAD").strip()
    assert prov["overrides"] == overrides                # the command line, as Hydra parsed it
    assert prov["versions"]["jax"] == s["jax_version"] and prov["backend"] == "cpu"
    assert (tmp_path / "r" / "git.diff").exists() is prov["git"]["dirty"]


# ---------------------------------------------------------------- defaults a newcomer expects

@pytest.mark.parametrize("task,model", [("mnist", "mlp"), ("digits", "mlp"), ("and", "perceptron"),
                                        ("or", "perceptron"), ("xor", "perceptron"), ("salary", "linear"),
                                        ("echo", "lstm"), ("textgen", "lstm")])
def test_each_task_brings_its_natural_model(task, model):
    from jaxdl.configure import parse
    cfg = compose_cfg([f"task={task}"])
    assert cfg.model.name == model
    assert parse(cfg).model.name == model                # and the config checks accept it


def test_an_explicit_wrong_model_is_refused_before_any_compute(tmp_path):
    from jaxdl.configure import ConfigError, parse
    with pytest.raises(ConfigError, match=r"^model: model 'lstm' cannot run task 'mnist'; use model=mlp"):
        parse(compose_cfg(["task=mnist", "model=lstm"]))
    with pytest.raises(ConfigError, match="model 'mlp' cannot run task 'xor'; use model=perceptron"):
        parse(compose_cfg(["task=xor", "model=mlp"]))
    assert compose_cfg(["experiment=mnist_modern"]).model.hidden == [800]     # experiments still set theirs
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", "task=digits", "model=lstm",
                        f"hydra.run.dir={tmp_path}/r"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "model: model 'lstm' cannot run task 'digits'" in p.stderr
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_digits_and_the_perceptron_run_without_naming_a_model(tmp_path):
    s, _ = run_inprocess(tmp_path, ["task=digits", "train.epochs=2"] + QUIET, "digits")
    assert s["final"]["test/accuracy"] > 0.5
    s, _ = run_inprocess(tmp_path, ["task=and"] + QUIET, "and")
    assert s["final"]["train/accuracy"] == 1.0


def test_the_data_dir_is_the_users(monkeypatch):
    text = (ROOT / "conf" / "config.yaml").read_text()
    assert "shared" not in text.split("data_dir:", 1)[1].splitlines()[0]
    monkeypatch.delenv("JAXDL_DATA", raising=False)
    assert compose_cfg([]).data_dir == "data"
    monkeypatch.setenv("JAXDL_DATA", "/somewhere/else")
    assert compose_cfg([]).data_dir == "/somewhere/else"
    assert "shared/data" in (ROOT / ".ci" / "run").read_text()


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path):
    from jaxdl.data.images import mnist
    from jaxdl.tasks.text import read_text
    with pytest.raises(FileNotFoundError) as e:
        mnist("idx", None, str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / "mnist") in msg and "task.source=tfds" in msg and "train-images-idx3-ubyte.gz" in msg
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        mnist("idx", None, str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        read_text("file", "", str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / "tinyshakespeare" / "input.txt") in msg and "task.source=tfds" in msg
    assert "task.path=FILE" in msg
    # through the entry point: a clear last line, no traceback
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", "task=mnist", f"data_dir={tmp_path}/none",
                        f"hydra.run.dir={tmp_path}/r", "logger.mode=disabled"], cwd=ROOT, capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 1 and "[jaxdl] error: MNIST not found: looked in" in p.stderr
    assert "Traceback" not in p.stderr


def test_mnist_from_tfds_runs_the_tensorflow_datasets_code_path(tmp_path):
    """task.source=tfds with TFDS's own mock: the real `mnist` builder, its features and splits,
    with generated examples instead of a download."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from jaxdl.data.images import mnist
    with tfds.testing.mock_data(num_examples=48):
        x_tr, y_tr, x_te, y_te = mnist("tfds")
        assert x_tr.shape == (48, 784) and x_te.shape == (48, 784) and x_tr.dtype.name == "float32"
        assert 0 <= x_tr.min() and x_tr.max() <= 1 and set(y_tr.tolist()) <= set(range(10))
        s, d = run_inprocess(tmp_path, ["task=mnist", "task.source=tfds", "task.val_size=8", "train.epochs=1",
                                        "train.batch_size=8", "model.hidden=[16]"] + QUIET)
    assert s["num_params"] == 784 * 16 + 16 + 16 * 10 + 10
    assert 0 <= s["final"]["test/accuracy"] <= 1 and (d / "metrics.jsonl").exists()
