"""SPD sweeps (issue 24 item 3, stage 2): Stochastic Parameter Decomposition of a stored toy sweep's
models as a job kind (``sweeps.spd.job``) of the one chunk machinery: a config with an ``spd:``
section (``sweeps.spd.config``; ``+spd=toy spd.toy.sweep=DIR``) plans every selected model ×
every grid point × ``sweep.seeds`` decomposition seeds, and stores one row per decomposition,
scored against the toy model's ground truth (docs/spd.md)."""
