"""jaxdl's Hydra sweeper over Optuna (>= 5): `hydra/sweeper=optuna` (docs/search.md).

The published hydra-optuna-sweeper pins optuna < 3; this adapter keeps its config keys
(sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate, params) and
adds persistent studies that a relaunch continues, pruning from the trials' per-epoch val
headline, and the trial value of a population. Optuna's ask/tell samples; Hydra's
configured launcher (basic, joblib, submitit) runs the trials. The work is in
jaxdl.search.sweeper (the sweep) and jaxdl.search.trial (inside a trial's run)."""
