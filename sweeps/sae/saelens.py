"""SAELens at the edge: worlds given as a SAELens ``SyntheticModelConfig`` or a saved synthetic
model (``sae.world.kind=saelens``), and stored SAEs exported to SAELens's on-disk format
(``toymodels-saelens export``). docs/saes/interop.md says what is exact with and without the
``saelens`` extra.

- A **saved directory** is read with ``safetensors.numpy`` and ``json`` (``toymodels.sae.saelens``):
  dictionary, bias, firing probabilities, correlation and hierarchy bit for bit, without torch.
  Only folded-normal magnitudes (drawn by torch, not saved) need torch: with it installed they are
  drawn as SAELens draws them.
- A **config** (a dict in our config, or a .json/.yaml file holding one) is built by SAELens's own
  generator, since its dictionary (and correlation, and random firing probabilities) are drawn by
  torch's random generator: that needs the extra, and a ``seed`` (else the world is not
  reproducible).

Everything here imports torch and sae-lens only when asked to.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from pathlib import Path

from toymodels.registry import ConfigError
from toymodels.sae import saelens as core

KEY = "sae.world.saelens"
INSTALL = "pip install -e '.[saelens]'"


def has_saelens() -> bool:
    return importlib.util.find_spec("sae_lens") is not None


def canonical(value) -> str:
    """The text a world is identified by: a saved directory's absolute path, or a config's sorted
    JSON (a .json/.yaml file is read into its config)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            KEY,
            "must be a SAELens SyntheticModelConfig (a mapping), a .json/.yaml file holding one, "
            f"or a saved SAELens synthetic model directory; got {value!r}",
        )
    path = Path(value).expanduser()
    if path.is_dir():
        if not core.is_saved_model(path):
            raise ConfigError(
                KEY,
                f"{value} is a directory without {core.CONFIG_FILE} and {core.WEIGHTS_FILE}: "
                "not a saved SAELens synthetic model (SyntheticModel.save)",
            )
        return str(path.resolve())
    if path.is_file() and path.suffix in (".json", ".yaml", ".yml"):
        text = path.read_text()
        try:
            data = (
                json.loads(text)
                if path.suffix == ".json"
                else OmegaConf.to_container(OmegaConf.create(text))
            )
        except Exception as error:  # noqa: BLE001 - any parse error is the user's file
            raise ConfigError(
                KEY, f"{value} could not be read as a config ({type(error).__name__}: {error})"
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(
                KEY, f"{value} holds a {type(data).__name__}, not a SyntheticModelConfig mapping"
            )
        return json.dumps(data, sort_keys=True)
    raise ConfigError(
        KEY,
        f"{value} is neither a saved SAELens synthetic model directory nor a .json/.yaml config file",
    )


def _config_of(text: str) -> dict | None:
    return json.loads(text) if text.startswith("{") else None


def check(value) -> str:
    """The world's canonical text, after every check that needs no compute (ConfigError names the key)."""
    text = canonical(value)
    config = _config_of(text)
    if config is None:  # a saved directory: read its config only
        config = json.loads((Path(text) / core.CONFIG_FILE).read_text())
        _check_dtype(config)
        if not has_saelens() and _needs_torch_magnitudes(config):
            raise ConfigError(
                KEY,
                f"{text}: its folded-normal magnitudes are drawn by torch from its seed and not saved; "
                f"reading them needs the saelens extra: {INSTALL}",
            )
        return text
    for name in ("num_features", "hidden_dim"):
        if (
            not isinstance(config.get(name), int)
            or isinstance(config.get(name), bool)
            or config[name] < 1
        ):
            raise ConfigError(f"{KEY}.{name}", f"must be an integer >= 1, got {config.get(name)!r}")
    if not isinstance(config.get("seed"), int):
        raise ConfigError(
            f"{KEY}.seed",
            "must be an integer: SAELens draws the dictionary from its seed, and without "
            "one the world would differ at every run",
        )
    _check_dtype(config)
    if not has_saelens():
        raise ConfigError(
            KEY,
            "a SyntheticModelConfig is built by SAELens's own generator (its dictionary is drawn "
            f"by torch's random generator): install the extra ({INSTALL}), or give the path of a "
            "saved SAELens synthetic model (SyntheticModel.save), which needs no extra",
        )
    try:
        _saelens_config(config)
    except (TypeError, ValueError, KeyError) as error:
        raise ConfigError(
            KEY, f"SAELens refuses this SyntheticModelConfig: {type(error).__name__}: {error}"
        ) from None
    return text


def _check_dtype(config: dict) -> None:
    if config.get("dtype", "float32") != "float32":
        raise ConfigError(
            f"{KEY}.dtype",
            f"only float32 SAELens models are read (we train in float32), got "
            f"{config.get('dtype')!r}",
        )


def _needs_torch_magnitudes(config: dict) -> bool:
    return any(
        isinstance(config.get(name), dict) and config[name].get("generator_name") == "folded_normal"
        for name in ("mean_firing_magnitudes", "std_firing_magnitudes")
    )


def _saelens_config(config: dict):
    from sae_lens.synthetic import SyntheticModelConfig
    from sae_lens.synthetic.firing_probabilities import ZipfianFiringProbabilityConfig

    config = dict(config)
    config.setdefault("firing_probability", ZipfianFiringProbabilityConfig().to_dict())
    return SyntheticModelConfig.from_dict(config)


def generate(config: dict) -> core.SyntheticArrays:
    """Run SAELens's generator on ``config`` and take every array its sampler uses."""
    from sae_lens.synthetic import SyntheticModel

    return arrays_of_model(SyntheticModel(_saelens_config(config)))


def arrays_of_model(model) -> core.SyntheticArrays:
    """Every array a ``sae_lens.synthetic.SyntheticModel``'s sampler uses."""
    gen = model.activation_generator
    corr = model.correlation_matrix
    return core.SyntheticArrays(
        config=model.cfg.to_dict(),
        feature_vectors_NxH=model.feature_dict.feature_vectors.detach().numpy(),
        bias_H=model.feature_dict.bias.detach().numpy(),
        firing_probabilities_N=gen.firing_probabilities.numpy(),
        mean_N=gen.mean_firing_magnitudes.numpy(),
        std_N=gen.std_firing_magnitudes.numpy(),
        correlation_factor_NxR=None if corr is None else corr.correlation_factor.numpy(),
        correlation_diag_N=None if corr is None else corr.correlation_diag.numpy(),
        hierarchy=None if model.hierarchy is None else model.hierarchy.to_dict(),
    )


def _folded_normal(value: dict, n: int, seed: int | None):
    """SAELens's folded-normal magnitudes, drawn with torch as SAELens draws them."""
    import torch

    if seed is None:
        raise ConfigError(
            KEY, "folded-normal magnitudes of a model saved without a seed cannot be reproduced"
        )
    generator = torch.Generator().manual_seed(seed)
    samples = torch.abs(
        value.get("mean", 0.0) + torch.randn(n, generator=generator) * value.get("std", 0.1)
    )
    if value.get("min_value") is not None or value.get("max_value") is not None:
        samples = torch.clamp(samples, min=value.get("min_value"), max=value.get("max_value"))
    return samples.numpy()


def read_saved(path: str) -> core.SyntheticArrays:
    """A saved directory: loaded by SAELens itself where it is installed (every magnitude exactly
    as it samples them), else read with safetensors' numpy API (``toymodels.sae.saelens``), with
    folded-normal magnitudes drawn by torch where torch is installed."""
    if has_saelens():
        from sae_lens.synthetic import SyntheticModel

        return arrays_of_model(SyntheticModel.load_from_disk(path))
    return core.read_synthetic_model(
        path, draw=_folded_normal if importlib.util.find_spec("torch") else None
    )


@functools.lru_cache(maxsize=4)
def arrays_of(text: str) -> core.SyntheticArrays:
    """The world's arrays from its canonical text (cached: the planner and an in-process chunk
    build it once)."""
    config = _config_of(text)
    return read_saved(text) if config is None else generate(config)


@functools.lru_cache(maxsize=4)
def world_of(text: str):
    """(SaelensSource, SaelensWorld) of the world ``text``."""
    try:
        return core.build(arrays_of(text))
    except ValueError as error:
        raise ConfigError(KEY, str(error)) from None


# --- export ------------------------------------------------------------------------------------


def export_row(row, out) -> Path:
    """Write one stored SAE (a row of an SAE sweep's results) as a SAELens SAE directory."""
    params = row.get("params")
    if not isinstance(params, (bytes, bytearray)):
        raise ConfigError(
            "params",
            f"SAE uid {row.get('uid')} was stored without its parameters (stores written "
            "before the params column); rerun its sweep into a new sweep.out to export it",
        )
    k = int(row.get("k") or 0)
    meta = {"toymodels_uid": int(row["uid"]), "toymodels_kind": str(row["kind"])}
    # a row without a decoder column (a store written before it, or a kind without one) was
    # trained with unit-norm decoder columns; without a codes column, with unscaled codes
    decoder, codes = row.get("decoder"), row.get("codes")
    options = {
        "decoder": decoder if isinstance(decoder, str) else "unit",
        "codes": codes if isinstance(codes, str) else "unscaled",
    }
    cfg, tensors = core.to_saelens(
        str(row["kind"]), core.params_of_blob(params), k, meta, options=options
    )
    return core.write_sae(out, cfg, tensors)


def export(store, out, uids=None) -> list[Path]:
    """Every stored SAE of the sweep at ``store`` (or those of ``uids``) into ``out/<uid>/``."""
    from sweeps.store import read_results

    table = read_results(store)
    if "kind" not in table.columns or "W_dec" not in table.columns:
        raise ConfigError("store", f"{store} holds no SAE sweep's rows")
    if uids:
        missing = sorted(set(uids) - {int(u) for u in table["uid"]})
        if missing:
            raise ConfigError("--uid", f"no stored SAE with uid {missing[0]} in {store}")
        table = table[table["uid"].isin(uids)]
    return [export_row(row, Path(out) / str(int(row["uid"]))) for _, row in table.iterrows()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="toymodels-saelens",
        description="Export stored SAEs to SAELens's on-disk format (cfg.json + "
        "sae_weights.safetensors), one directory per SAE.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="export an SAE sweep's stored SAEs")
    ex.add_argument("store", help="an SAE sweep's sweep.out")
    ex.add_argument(
        "out", help="directory to write <uid>/cfg.json and <uid>/sae_weights.safetensors into"
    )
    ex.add_argument("--uid", type=int, action="append", help="only this SAE (repeatable)")
    args = parser.parse_args(argv)
    try:
        if not (Path(args.store) / "results.parquet").exists():
            raise ConfigError(
                "store", f"{args.store} holds no results.parquet: is it an SAE sweep's sweep.out?"
            )
        paths = export(args.store, args.out, args.uid)
    except (ConfigError, ValueError) as error:
        print(f"toymodels-saelens: error: {error}", file=sys.stderr)
        return 2
    print(
        f"{len(paths)} SAE(s) written under {args.out} (load each with sae_lens.SAE.load_from_disk)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
