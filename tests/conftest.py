import os

# Tests run on the CPU; keep JAX from grabbing an accelerator a developer machine may have.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("WANDB_MODE", "offline")
