"""``toymodels-sweep``: compose a Hydra config, validate it, and run the sweep.

    toymodels-sweep experiment=tms_intro sweep.seeds=5 train.steps=5000
"""

from __future__ import annotations

import dataclasses
import sys
import typing

from sweeps.config import CONF_DIR, Config, ConfigError, register_schema

GROUPS = ("model", "data", "train", "sweep", "ray", "wandb", "experiment")


def check_override_keys(overrides: list[str], schema=Config) -> None:
    """Refuse an unknown key before Hydra runs, listing the keys that are allowed there."""
    for item in overrides:
        if item.startswith("-") or "=" not in item:
            continue
        key = item.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra") or key in GROUPS:
            continue
        node, path = schema, []
        for part in key.split("."):
            fields = {f.name: f for f in dataclasses.fields(node)}
            if part not in fields:
                where = f" under {'.'.join(path)}" if path else ""
                raise ConfigError(key, f"unknown key; allowed{where}: {', '.join(fields)}")
            path.append(part)
            hints = typing.get_type_hints(node)
            node = hints[part]
            if not dataclasses.is_dataclass(node):
                break  # a leaf or a free-form dict (sweep.grid.<axis>): values are validated later


def _task(cfg) -> None:
    import logging

    from sweeps.config import to_config
    from sweeps.runner import run_sweep

    logging.getLogger("jax").setLevel(logging.WARNING)  # not the "no TPU found" notice
    try:
        report = run_sweep(to_config(cfg))
    except ConfigError as error:  # a bad value, or an output directory holding another sweep
        print(f"toymodels-sweep: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: every finished chunk is stored; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    print(report.summary())
    if not report.ok:
        sys.exit(1)


def main() -> None:
    import hydra

    try:
        check_override_keys(sys.argv[1:])
    except ConfigError as error:
        print(f"toymodels-sweep: error: {error}", file=sys.stderr)
        sys.exit(2)
    if not (CONF_DIR / "config.yaml").exists():
        print(f"toymodels-sweep: error: no config at {CONF_DIR}: install from the repository with "
              "'pip install -e .' (scripts/setup does) or point TOYMODELS_CONF at its conf/", file=sys.stderr)
        sys.exit(2)
    register_schema()
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)(_task)()


if __name__ == "__main__":
    main()
