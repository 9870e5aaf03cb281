"""The run directory contract: metrics.jsonl, summary.json, checkpoints/, wandb files."""
