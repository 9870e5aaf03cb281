"""The typed config schema (jaxdl.config.schema) and how a setting is declared
(jaxdl.config.fields). Plain dataclasses: every layer may import them. Parsing a
composed Hydra config into them happens once, at the entry point (jaxdl.configure)."""
from jaxdl.config.fields import ConfigError, check, setting
from jaxdl.config.schema import (Config, DistConfig, EstimatorConfig, LinearConfig, LoggerConfig, MeshConfig,
                                 MLPConfig, OptimConfig, PerceptronConfig, RecurrentConfig, TBPTTConfig,
                                 TrainConfig)

__all__ = ["ConfigError", "check", "setting", "Config", "DistConfig", "EstimatorConfig", "LinearConfig",
           "LoggerConfig", "MeshConfig", "MLPConfig", "OptimConfig", "PerceptronConfig", "RecurrentConfig",
           "TBPTTConfig", "TrainConfig"]
