"""Config-hash compatibility of the ``sae:`` section: how a stored ``sweep.yaml`` written before a
key existed hashes as what its SAEs were trained with (``hashed_sae``, read by
``sweeps.store.meta`` through ``sweeps.config``), and the one-line hint that names the settings
which resume such a store (``resume_hint``). docs/saes/reference.md, "Stores written before"."""

from __future__ import annotations

from sweeps.sae.config import SCHEMA_HPARAMS
from toymodels.sae.hyperparams import BANDWIDTH

# Keys of the sae: section added after 43f758a, and bandwidth's default before then (config hashes).
ADDED_SAE_KEYS = (
    "init_threshold",
    "grad_clip",
    "aux_coefficient",
    "dead_window",
    "init_norm",
    "decoder",
    # BatchTopK's and Matryoshka's codes (after aab1d17): a new key at its neutral value (unscaled)
    "codes",
)
# Of those, the keys added after 72e86c7: stores of user kinds were hashed without them.
NEWER_SAE_KEYS = ("init_norm", "decoder", "codes")
OLD_BANDWIDTH = 1e-3
# Hyperparameters built-in kinds declared only from the commit that added ``sae.decoder`` (after
# 72e86c7): a sweep.yaml without that key hashes as those kinds read it then.
DECLARED_WITH_DECODER = {"plain": ("decoder", "grad_clip"), "gated": ("decoder", "grad_clip")}
# Hyperparameters built-in kinds read only since a commit after 25218f3 (BatchTopK from SAELens's
# initial norm): a sweep.yaml written before holds the key but was hashed without it for the kind
# (``hashed_sae(data, before_reads=True)``), which is how its store verifies and names
# ``sae.init_norm=1``, the setting that resumes it as it was trained.
READ_SINCE_25218F3 = {"batchtopk": ("init_norm",)}


def hashed_sae(data: dict, before_reads: bool = False) -> None:
    """The ``sae:`` section as its config hash sees it (``sweeps.store.meta``), in place: keys
    added after 43f758a (``ADDED_SAE_KEYS``) are left out where no SAE of the sweep reads them
    (no kind of it declares them, or at their neutral value: AuxK's α = 0 and its window with it,
    Matryoshka's init_norm = 1, BatchTopK's and Matryoshka's codes = unscaled),
    and an unread ``bandwidth`` at its new default is hashed at its old one, so that a sweep that
    means what it meant then keeps its hash (docs/saes/reference.md, "Stores written before").
    A sweep.yaml without ``decoder`` (written before it) is hashed as plain and gated were read
    then, without ``decoder`` and ``grad_clip``; ``decoder=unit`` is their neutral value.
    A sweep.yaml written before (none of those keys) is left as it is. Only built-in kinds are
    known here: with a user's kind in the sweep every key is kept but those added after 72e86c7
    (``NEWER_SAE_KEYS``) where no SAE reads them. The kinds are the grid's over ``kind``, else
    ``sae.kind`` (the default ``plain`` a grid overrides trains nothing). ``before_reads``: as
    25218f3 hashed it, before the kinds of ``READ_SINCE_25218F3`` read those keys."""
    from toymodels.sae.kinds import BUILTIN

    sae = data.get("sae")
    if not isinstance(sae, dict) or not any(key in sae for key in ADDED_SAE_KEYS):
        return
    if sae.get("options") == {}:
        del sae["options"]
    grid = data.get("sweep", {}).get("grid", {}) or {}
    # the kinds the sweep trains: its grid's, else sae.kind (which a grid over kind overrides)
    kinds = list(grid["kind"]) if isinstance(grid.get("kind"), list) else [sae.get("kind")]
    builtin = {kind.name: kind for kind in BUILTIN}
    if not before_reads:
        _mark_new_reads(sae, kinds, grid)
    if not all(name in builtin for name in kinds):
        # the keys added after 72e86c7 where the sweep trains as then (at a neutral value, or at
        # their default where no built-in kind of the sweep declares them): as stores of user kinds
        # were hashed before them (a user kind that reads one is newer). decoder=unit alone is not
        # plain's and gated's training then: that needs grad_clip=0 too, and such a store hashed
        # the grad_clip it was written with.
        for name in NEWER_SAE_KEYS:
            hparam = SCHEMA_HPARAMS[name]
            declared = any(k in builtin and builtin[k].hparam(name) for k in kinds)
            as_then = sae.get(name) == hparam.neutral and name != "decoder"
            if (
                name in sae
                and name not in grid
                and (as_then or (not declared and sae[name] == hparam.default))
            ):
                del sae[name]
        return
    then = set() if "decoder" in sae else {"decoder", "grad_clip"}  # written before sae.decoder
    # every name is a built-in kind's (checked above); the `in` narrows away sae.get's None
    read = {
        h.name
        for name in kinds
        if name in builtin
        for h in builtin[name].hparams
        if not (h.name in then and h.name in DECLARED_WITH_DECODER.get(name, ()))
        and not (before_reads and h.name in READ_SINCE_25218F3.get(name, ()))
    }
    live = {name: name in read or name in grid for name in SCHEMA_HPARAMS}
    for name in ADDED_SAE_KEYS:
        hparam = SCHEMA_HPARAMS[name]
        if name in grid or name not in sae:
            continue
        if hparam.neutral is not None and sae[name] == hparam.neutral:
            live[name] = False
    for name in ADDED_SAE_KEYS:
        hparam = SCHEMA_HPARAMS[name]
        if (
            name in sae
            and name not in grid
            and (not live[name] or (hparam.needs and not live[hparam.needs]))
        ):
            del sae[name]
    if not live["bandwidth"] and sae.get("bandwidth") == BANDWIDTH.default:
        sae["bandwidth"] = OLD_BANDWIDTH


def _mark_new_reads(sae: dict, kinds: list, grid: dict) -> None:
    """For each kind of the sweep that reads a key only since 25218f3 (``READ_SINCE_25218F3``) at a
    value other than its neutral one, an entry ``<kind>_<key>`` in the hashed section: such a sweep
    hashes unlike the one 25218f3 hashed, also where another kind of it read the key then."""
    for kind, keys in READ_SINCE_25218F3.items():
        if kind not in kinds:
            continue
        for key in keys:
            if key not in grid and key not in sae:  # written before the key existed: as then
                continue
            value = grid[key] if key in grid else sae[key]
            if key in grid or value != SCHEMA_HPARAMS[key].neutral:
                sae[f"{kind}_{key}"] = value


# the hashed entries of _mark_new_reads, by the setting they stand for
_MARKS = {f"{kind}_{key}": key for kind, keys in READ_SINCE_25218F3.items() for key in keys}


def resume_hint(changed: dict) -> str:
    """How to resume a store whose config differs from this one only in ``sae:`` keys its hash
    left out at their neutral values (a store written before they existed: ``sae.decoder=unit``
    for plain and gated before issue 21's free decoder, with ``sae.grad_clip=0``;
    ``sae.aux_coefficient=0`` for top-k kinds before AuxK; ``sae.fold_b_dec=false`` for every
    store written before that key): "" when something else differs.
    ``changed``: {dotted key: (stored, this)} (``sweeps.store.meta.differences``)."""
    from sweeps.store.meta import ADDED_AT_NEUTRAL

    fixes = []
    for key, (stored, this) in changed.items():
        name = key.removeprefix("sae.")
        if key.startswith("sae.") and ("sae", name) in ADDED_AT_NEUTRAL:
            # a key that is no kind's hyperparameter (sae.fold_b_dec): its neutral value trains as before
            neutral = ADDED_AT_NEUTRAL[("sae", name)]
            if neutral is None or stored is not None or this == neutral:
                return ""
            fixes.append(f"sae.{name}={str(neutral).lower()}")
            continue
        hparam = SCHEMA_HPARAMS.get(_MARKS.get(name, name)) if key.startswith("sae.") else None
        # no hint where the neutral value is given already (it did not bring the old hash back)
        if hparam is None or hparam.neutral is None or stored is not None or this == hparam.neutral:
            return ""
        fix = (
            f"sae.{hparam.name}={hparam.neutral:g}"
            if not hparam.choices
            else f"sae.{hparam.name}={hparam.neutral}"
        )
        if fix not in fixes:
            fixes.append(fix)
    return (
        f"its SAEs were trained before {' and '.join(k.split('=')[0] for k in fixes)} existed "
        f"(or at their neutral values): add {' '.join(fixes)} to resume it as it was trained "
        '(docs/saes/reference.md, "Stores written before")'
        if fixes
        else ""
    )
