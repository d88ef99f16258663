import os
import secrets

# Tests run on the CPU; keep JAX from grabbing an accelerator a developer machine may have.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests' own Ray clusters (fixtures, ray.cluster_utils) need a token, this session's, held in the
# environment only (docs/security.md); a sweep's own local Ray makes its own token whatever this says.
os.environ.setdefault("RAY_AUTH_MODE", "token")
if os.environ["RAY_AUTH_MODE"] == "token" and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("WANDB_MODE", "offline")
