"""The sweeper's config nodes: hydra/sweeper=optuna and hydra/sweeper/sampler=tpe|random|grid.
Imports no Optuna: Hydra imports every hydra_plugins module at start-up."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConfig:
    """optuna.samplers.TPESampler (Bergstra et al. 2011)."""
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False


@dataclass
class RandomSamplerConfig:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class GridSamplerConfig:
    """optuna.samplers.GridSampler over every combination of the (discrete) params."""
    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: Optional[int] = None


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.jaxdl_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    direction: Any = "minimize"          # minimize | maximize (jaxdl returns one value: the val headline)
    storage: Optional[str] = None        # sqlite:///path.db (SQLAlchemy URL) or a journal file path; null: in memory
    study_name: Optional[str] = None     # null: "study"
    n_trials: int = 20                   # finished trials the study ends with (a relaunch runs the rest)
    n_jobs: int = 1                      # trials asked per batch (the launcher may run a batch in parallel)
    max_failure_rate: float = 0.0
    params: Optional[Dict[str, str]] = None
    pruner: str = "none"                 # none | median | hyperband | threshold
    pruner_kwargs: Optional[Dict[str, Any]] = field(default_factory=dict)   # optuna's pruner class's arguments
    trial_value: str = "selected"        # selected | mean: a population trial's value (jaxdl.search.objective)
    trial: Optional[int] = None          # set by the sweeper on each job: the Optuna trial number


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="jaxdl_optuna_sweeper")
cs.store(group="hydra/sweeper/sampler", name="tpe", node=TPESamplerConfig, provider="jaxdl_optuna_sweeper")
cs.store(group="hydra/sweeper/sampler", name="random", node=RandomSamplerConfig, provider="jaxdl_optuna_sweeper")
cs.store(group="hydra/sweeper/sampler", name="grid", node=GridSamplerConfig, provider="jaxdl_optuna_sweeper")
