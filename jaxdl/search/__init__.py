"""Search inside one compiled program: random populations (values drawn from
distributions), successive halving and population-based training over the members
of the one training loop (jaxdl.train.loop); and the presets for Hydra's Optuna
sweeper across programs (conf/hparams_search/).

spec       population.* config -> SearchSpec (validated, clear errors)
draw       the members: grid x samples drawn from the run's seed x replicas
hparams    the inject_hyperparams values inside a member-stacked optimizer state
schedules  halving's survivors, PBT's exploit/explore (pure, on device)
run        SearchRun: the Recorder + schedule hook the loop trains with
summary    summary.json's per-member stop epoch, lineage, selection
report     figures of a halving or PBT run
"""
