"""SAE kinds own their settings (issue 23 item 3): each kind's declared hyperparameters are its
grid axes, checks, defaults and columns; a user's SAE kind is one plug-in file, swept in process
and on Ray and drawn; stores of 43f758a resume where their SAEs mean what they meant."""

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from sweeps.config import ConfigError
from sweeps.jobs.chunks import make_chunks
from sweeps.plan import plan_sweep
from sweeps.store import read_results
from sweeps.store.meta import body_hash, config_hash
from tests.helpers import cli, compose_config
from tests.readme import doc_block

DATA = Path(__file__).parent.parent / "data"


# The number of SAEs 43f758a planned for each and a digest of their sorted uids (computed with that
# version's sweeps.sae_plan.plan_saes): a store that resumes must find its rows by these ids.
UIDS_43F758A = {
    "sae_shrinkage_small": (12, "0e6893d755cb50e1"),
    "sae_pareto_small": (21, "990059131c2434c6"),
    "sae_orthogonality_small": (8, "1147009c78d82f64"),
    "sae_active_small": (6, "20bbc3ca9a329055"),
}


@pytest.mark.parametrize(
    "name, extra, resumes",
    [
        ("sae_shrinkage_small", [], False),  # plain and gated train a free decoder now
        (
            "sae_shrinkage_small",
            ["sae.decoder=unit", "sae.grad_clip=0", "sae.fold_b_dec=false"],
            True,
        ),  # plain, gated as then; rescaled never changed
        (
            "sae_shrinkage_small",
            ["sae.decoder=unit", "sae.grad_clip=0"],
            False,
        ),  # encoded W_enc h − W_enc b_dec now
        ("sae_pareto_small", [], False),  # jumprelu and AuxK changed those SAEs
        ("sae_orthogonality_small", [], False),  # topk with AuxK
        (
            "sae_orthogonality_small",
            [
                "sae.aux_coefficient=0",
                "sae.decoder=unit",
                "sae.grad_clip=0",
                "sae.fold_b_dec=false",
            ],
            True,
        ),  # topk without AuxK, plain with a unit decoder unclipped: as then
        (
            "sae_active_small",
            ["sae.aux_coefficient=0", "sae.dead_window=5", "sae.fold_b_dec=false"],
            True,
        ),  # the window needs AuxK
    ],
)
def test_stores_of_43f758a_resume_where_their_saes_mean_what_they_meant(name, extra, resumes):
    """sweep.yaml of `toymodels-sweep experiment=NAME` as 43f758a wrote it: its body still hashes to
    its first line, and this version's config hashes to it exactly when it trains the same SAEs;
    the SAEs keep their ids (a resumed store trains none of them again)."""
    import hashlib

    text = (DATA / f"sweep_43f758a_{name}.yaml").read_text()
    stored, body = text.splitlines()[0].split(": ")[1], text.split("\n", 2)[2]
    assert body_hash(body) == stored
    config = compose_config([f"experiment={name}", *extra])
    assert (config_hash(config) == stored) is resumes
    uids = sorted(p.uid for _, p in plan_sweep(config).units)
    assert (
        len(uids),
        hashlib.sha256(",".join(map(str, uids)).encode()).hexdigest()[:16],
    ) == UIDS_43F758A[name]
    assert text.splitlines()[1] == f"# models: {len(uids)}"


def test_a_store_of_plain_and_gated_saes_from_72e86c7_resumes_only_as_it_was_trained(tmp_path):
    """sweep.yaml of `toymodels-sweep experiment=sae_shrinkage_small` as 72e86c7 wrote it (plain,
    gated, rescaled; unit-norm decoders, no clipping, before sae.decoder): its body still hashes
    to its first line; at today's defaults (decoder=free, clipped) it is refused in one line
    naming the keys and the settings that resume it; with them the config hashes to it (the
    rows they train are those of 72e86c7, bit for bit: tests/toymodels/test_sae_kinds.py)."""
    from sweeps.store.meta import describe_differences, differences

    text = (DATA / "sweep_72e86c7_sae_shrinkage_small.yaml").read_text()
    stored, body = text.splitlines()[0].split(": ")[1], text.split("\n", 2)[2]
    assert body_hash(body) == stored
    (tmp_path / "sweep.yaml").write_text(text)
    config = compose_config(["experiment=sae_shrinkage_small"])
    assert config_hash(config) != stored
    line = describe_differences(differences(tmp_path, config))
    assert (
        "sae.decoder (None -> 'free'), sae.fold_b_dec (None -> True), sae.grad_clip (None -> 1.0)"
        in line
    )
    assert (
        "add sae.decoder=unit sae.fold_b_dec=false sae.grad_clip=0 to resume it" in line
        and "\n" not in line
    )
    as_then = ["sae.decoder=unit", "sae.grad_clip=0", "sae.fold_b_dec=false"]
    resumed = compose_config(["experiment=sae_shrinkage_small", *as_then])
    assert config_hash(resumed) == stored
    only_unit = compose_config(
        ["experiment=sae_shrinkage_small", "sae.decoder=unit", "sae.fold_b_dec=false"]
    )
    line = describe_differences(differences(tmp_path, only_unit))
    assert "add sae.grad_clip=0 to resume it" in line and "sae.decoder" not in line
    topk = compose_config(["experiment=sae_shrinkage_small", "sweep.grid.kind=[topk]"])
    assert "resume it" not in describe_differences(differences(tmp_path, topk))  # another sweep


PARETO = "experiment=sae_pareto_small"


@pytest.mark.parametrize(
    "then, now, resumes",
    [
        ([PARETO, "sweep.grid.kind=[topk,batchtopk]"], [], False),  # batchtopk from norm 0.1 now
        ([PARETO, "sweep.grid.kind=[topk,batchtopk]"], ["sae.init_norm=1"], False),  # codes
        (
            [PARETO, "sweep.grid.kind=[topk,batchtopk]"],
            ["sae.init_norm=1", "sae.codes=unscaled", "sae.fold_b_dec=false"],
            True,
        ),
        (["experiment=sae_orthogonality_small"], [], False),  # its plain: a free decoder now
        (["experiment=sae_shrinkage_small"], [], False),
        (
            ["experiment=sae_shrinkage_small"],
            ["sae.decoder=unit", "sae.grad_clip=0", "sae.fold_b_dec=false"],
            True,
        ),
        ([PARETO], [], False),  # matryoshka from norm 0.1, plain and gated free now
        ([PARETO, "sweep.grid.kind=[topk,matryoshka]"], [], False),
        ([PARETO, "sweep.grid.kind=[topk,matryoshka]"], ["sae.init_norm=1"], False),
        (
            [PARETO, "sweep.grid.kind=[topk,matryoshka]"],
            ["sae.init_norm=1", "sae.codes=unscaled", "sae.fold_b_dec=false"],
            True,
        ),  # as then
        ([PARETO, "sweep.grid.kind=[plain,matryoshka,my_kind]"], [], False),
        ([PARETO, "sweep.grid.kind=[my_kind]"], ["sae.fold_b_dec=false"], True),  # a user's kind
        ([PARETO, "sweep.grid.kind=[topk,my_kind]"], ["sae.fold_b_dec=false"], True),
        ([PARETO, "sweep.grid.kind=[matryoshka,my_kind]"], ["sae.init_norm=1"], False),
        (
            [PARETO, "sweep.grid.kind=[matryoshka,my_kind]"],
            ["sae.init_norm=1", "sae.codes=unscaled", "sae.fold_b_dec=false"],
            True,
        ),
        # plain beside a user's kind: its unit columns then were unclipped, and the clip was hashed
        ([PARETO, "sweep.grid.kind=[plain,my_kind]"], ["sae.decoder=unit"], False),
    ],
)
def test_stores_of_72e86c7_resume_exactly_where_their_saes_train_as_then(then, now, resumes):
    """sweep.yaml as 72e86c7 wrote it for the command ``then`` is this version's without the keys
    added since (sae.init_norm, sae.decoder, sae.fold_b_dec): ``then`` + ``now`` hashes to it exactly when its SAEs
    are trained as then (Matryoshka from unit norm, plain and gated with unit-norm columns and no
    clip), with built-in kinds, a user's kind, or both."""
    import jax
    from omegaconf import OmegaConf

    from sweeps.sae.compat import NEWER_SAE_KEYS
    from sweeps.store.meta import config_hash
    from toymodels.sae import SAE_KINDS, SaeKind, register_sae
    from toymodels.sae.base import pre_activation

    if "my_kind" not in SAE_KINDS:
        register_sae(
            SaeKind(
                name="my_kind",
                encode=lambda p, h, hp, spec, training: (jax.nn.relu(pre_activation(p, h)), {}),
            )
        )
    data = OmegaConf.to_container(OmegaConf.structured(compose_config(then)), resolve=True)
    for key in (*NEWER_SAE_KEYS, "fold_b_dec"):
        del data["sae"][key]
    stored = body_hash(OmegaConf.to_yaml(OmegaConf.create(data)))
    assert (stored == config_hash(compose_config([*then, *now]))) is resumes


@pytest.mark.parametrize(
    "override, key",
    [
        ("sae.bandwidth=0", "sae.bandwidth"),
        ("sae.init_threshold=-0.1", "sae.init_threshold"),
        ("sae.aux_coefficient=-1", "sae.aux_coefficient"),
        ("sae.dead_window=0", "sae.dead_window"),
        ("sae.init_norm=0", "sae.init_norm"),
        ("sweep.grid.k=[1,2.5]", r"sweep.grid.k\[1\]"),
        ("+sweep.grid.grad_clip=[1.0,-1]", r"sweep.grid.grad_clip\[1\]"),
        ("sae.decoder=unitnorm", "sae.decoder"),
        ("+sweep.grid.decoder=[free,none]", r"sweep.grid.decoder\[1\]"),
        ("sae.codes=pre", "sae.codes"),
        ("+sweep.grid.codes=[scaled,pre]", r"sweep.grid.codes\[1\]"),
        ("+sae.options.bandwidth=0.1", "sae.options.bandwidth"),  # a key of its own: sae.bandwidth
        ("+sae.options.temperature=1", "sae.options.temperature"),  # no kind declares it
        ("+sweep.grid.temperature=[1]", "sweep.grid.temperature"),
    ],
)
def test_kind_hyperparameters_are_checked_by_their_declarations(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        compose_config(["experiment=sae_pareto_small", override])


def test_each_kind_reads_its_own_axes_and_a_static_hyperparameter_splits_programs():
    """A kind trains once per value of the axes it declares; another kind's axis does not
    multiply it. A static hyperparameter (per_sae=False) is a program's option: one chunk per value."""
    import jax.numpy as jnp

    from toymodels.sae import HyperParam, SaeKind, register_sae
    from toymodels.sae.base import pre_activation

    width = HyperParam("test_width", 2, low=1, integer=True, per_sae=False)
    register_sae(
        SaeKind(
            name="test_static",
            hparams=(width,),
            encode=lambda p, h, hp, spec, training: (
                jnp.maximum(pre_activation(p, h), 0.0) * spec.option("test_width"),
                {},
            ),
        )
    )
    config = compose_config(
        [
            "experiment=sae_pareto_small",
            "sweep.grid.kind=[jumprelu,topk,test_static]",
            "sweep.grid.l1=[0.1,0.3]",
            "sweep.grid.k=[1]",
            "+sweep.grid.bandwidth=[0.02,0.05]",
            "+sweep.grid.test_width=[1,3]",
        ]
    )
    plan = plan_sweep(config)
    saes = plan.units
    per_kind = {}
    for group, point in saes:
        per_kind.setdefault(group.spec.kind, []).append((dict(point.values), group.spec.options))
    assert len(per_kind["jumprelu"]) == 4 and {v["bandwidth"] for v, _ in per_kind["jumprelu"]} == {
        0.02,
        0.05,
    }
    assert per_kind["topk"] == [({"k": 1, "aux_coefficient": 1 / 32, "dead_window": 1000}, ())]
    assert [options for _, options in per_kind["test_static"]] == [
        (("test_width", 1),),
        (("test_width", 3),),
    ]
    chunks = [c for c in make_chunks(plan) if c.spec.spec.kind == "test_static"]
    assert len(chunks) == 2 and chunks[0].spec.spec.option("test_width") == 1
    assert chunks[0].kinds and chunks[0].kinds[0].name == "test_static"  # carried to a worker


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    where = tmp_path_factory.mktemp("plugin")
    (where / "my_sae.py").write_text(doc_block("my_sae.py"))
    return where


def run_documented(where: Path, *extra: str) -> list:
    results = []
    for line in doc_block("my_sae sweep").splitlines():
        args = shlex.split(line)
        args += [*extra, "wandb.mode=disabled"] if args[0] == "toymodels-sweep" else []
        results.append(cli(args[0], *args[1:], cwd=where, timeout=600))
        assert results[-1].returncode == 0, results[-1].stderr
    return results


def test_a_users_sae_kind_from_the_docs_sweeps_in_process_and_is_drawn(plugin_dir):
    """docs/saes/reference.md's example as written: a p-norm kind with its own hyperparameter p
    beside the plain SAE. At p = 1 its penalty is the plain SAE's L1, from the same keys: the same
    decoder bit for bit. The figure draws one line per kind and p."""
    sweep, figures = run_documented(plugin_dir)  # noqa: RUF059
    assert "6/6 models stored" in sweep.stdout
    table = read_results(plugin_dir / "runs" / "sae_lp", arrays=True)
    lp, plain = table[table["kind"] == "lp"], table[table["kind"] == "plain"]
    assert sorted(zip(lp["p"], lp["l1"])) == [(0.5, 0.03), (0.5, 0.3), (1.0, 0.03), (1.0, 0.3)]
    assert plain["p"].isna().all() and set(table["sparsity_name"]) == {"λ"}
    for l1 in (0.03, 0.3):
        one = lp[(lp["p"] == 1.0) & (lp["l1"] == l1)].iloc[0]
        assert np.array_equal(one["W_dec"], plain[plain["l1"] == l1].iloc[0]["W_dec"])
    assert (
        lp[lp["p"] == 0.5]["l0"].to_numpy() < lp[lp["p"] == 1.0]["l0"].to_numpy()
    ).all()  # p < 1: sparser
    assert (plugin_dir / "runs" / "sae_lp" / "figures" / "sae_pareto.png").is_file()
    with pytest.raises(
        ConfigError, match=re.escape("sweep.grid.p[1]: must be a finite number > 0 and <= 1, got 0")
    ):
        compose_config(
            [
                "experiment=sae_pareto_small",
                f"plugins=[{plugin_dir / 'my_sae.py'}]",
                "sweep.grid.kind=[lp]",
                "+sweep.grid.p=[0.5,0]",
            ]
        )


@pytest.mark.reproduction
@pytest.mark.slow
def test_a_users_sae_kind_from_the_docs_sweeps_on_ray(plugin_dir, tmp_path):
    """The same sweep on Ray: workers never read my_sae.py (the chunks carry the kind); the same bits."""
    if not (
        plugin_dir / "runs" / "sae_lp" / "results.parquet"
    ).exists():  # run alone: the in-process one first
        run_documented(plugin_dir)
    shutil.copy(plugin_dir / "my_sae.py", tmp_path / "my_sae.py")
    run_documented(tmp_path, "sweep.executor=ray", "ray.num_cpus=2")
    ray_rows = read_results(tmp_path / "runs" / "sae_lp", arrays=True)
    local = read_results(plugin_dir / "runs" / "sae_lp", arrays=True)
    assert ray_rows["ray_node"].notna().all()
    for a, b in zip(ray_rows.sort_values("uid")["W_dec"], local.sort_values("uid")["W_dec"]):
        assert np.array_equal(a, b)


def test_the_sae_sections_keys_are_the_built_in_kinds_declarations():
    """One source of defaults: every built-in kind's hyperparameter is a key of the sae: section
    (defaults from the declaration), and every such key is some built-in kind's."""
    from sweeps.sae.config import SCHEMA_HPARAMS, SaeConf
    from toymodels.sae.kinds import BUILTIN

    declared = {h.name: h for kind in BUILTIN for h in kind.hparams}
    assert declared == SCHEMA_HPARAMS
    conf = SaeConf()
    assert {name: getattr(conf, name) for name in declared} == {
        name: h.default for name, h in declared.items()
    }


def test_no_resume_hint_names_a_value_already_given():
    """A refusal where the neutral value is set already offers no hint: setting it again would
    be refused the same way (plain beside a user's kind: its clip was hashed as then)."""
    from sweeps.sae.compat import resume_hint

    assert resume_hint({"sae.decoder": (None, "free")}).startswith("its SAEs were trained before")
    assert resume_hint({"sae.decoder": (None, "unit")}) == ""


def test_a_batchtopk_store_of_25218f3_verifies_is_refused_naming_init_norm_and_resumes_with_it(
    tmp_path,
):
    """BatchTopK starts from SAELens's norm 0.1 since 25218f3 (``init_norm``, which it did not read
    then): a sweep.yaml 25218f3 wrote (recorded: tests/sweeps/data) still verifies, this version's
    config is refused in one line naming ``sae.init_norm=1``, and with it hashes as then; beside
    Matryoshka, which read init_norm then, the sweep hashes unlike 25218f3's too (hash recorded
    from 25218f3's code), so old BatchTopK rows are never mixed with new ones."""
    from sweeps.store.meta import describe_differences, differences, verified_config_hash

    (tmp_path / "sweep.yaml").write_text(
        (DATA / "sweep_25218f3_sae_topk_batchtopk.yaml").read_text()
    )
    stored = verified_config_hash(tmp_path)
    then = [PARETO, "sweep.grid.kind=[topk,batchtopk]"]
    assert config_hash(compose_config(then)) != stored
    line = describe_differences(differences(tmp_path, compose_config(then)))
    assert (
        "add sae.init_norm=1 sae.codes=unscaled sae.fold_b_dec=false to resume it" in line
        and "\n" not in line
    )
    as_then = [*then, "sae.init_norm=1", "sae.codes=unscaled"]
    assert config_hash(compose_config(as_then)) != stored  # b_dec folded now
    assert config_hash(compose_config([*then, "sae.init_norm=1", "sae.fold_b_dec=false"])) != stored
    assert config_hash(compose_config([*as_then, "sae.fold_b_dec=false"])) == stored
    mixed = compose_config([PARETO, "sweep.grid.kind=[batchtopk,matryoshka]"])
    assert config_hash(mixed) != "cd478b4f310bf4b2"
    plain = compose_config([PARETO, "sweep.grid.kind=[plain]", "sae.fold_b_dec=false"])
    assert config_hash(plain) == "0bceacff2a503fcb"  # no batchtopk: as 25218f3 hashed it


# The chunk ids aab1d17 gave the sweep of sweep_aab1d17_sae_batch_top_k.yaml (its plan chunked
# with aab1d17's code, sweep.chunk_size=4: one chunk per kind), sorted.
CHUNKS_AAB1D17 = ["5370f05464738f37", "eeceea79d23628b8", "f39e2ad33798a402"]


def test_a_batch_top_k_store_of_aab1d17_verifies_is_refused_naming_codes_and_resumes_with_it(
    tmp_path,
):
    """BatchTopK and Matryoshka code pre·‖v_j‖ since aab1d17 (``sae.codes=scaled``, a key added
    with its neutral value ``unscaled``): a sweep.yaml aab1d17 wrote (recorded: tests/sweeps/data)
    still verifies; this version's config is refused in one line naming ``sae.codes=unscaled``,
    and with it hashes as then and plans the chunks aab1d17 planned (their ids recorded from
    aab1d17's code), so a resumed store finds its chunks done; at the default the two kinds'
    chunks are new ones, TopK's (which does not read codes) the same."""
    from sweeps.store.meta import describe_differences, differences, verified_config_hash

    (tmp_path / "sweep.yaml").write_text((DATA / "sweep_aab1d17_sae_batch_top_k.yaml").read_text())
    stored = verified_config_hash(tmp_path)
    then = [PARETO, "sweep.grid.kind=[topk,batchtopk,matryoshka]", "sweep.chunk_size=4"]
    now = compose_config(then)
    assert config_hash(now) != stored
    line = describe_differences(differences(tmp_path, now))
    assert "sae.codes (None -> 'scaled')" in line and "\n" not in line
    assert "add sae.codes=unscaled sae.fold_b_dec=false to resume it" in line
    resumed = compose_config([*then, "sae.codes=unscaled", "sae.fold_b_dec=false"])
    assert config_hash(resumed) == stored
    assert sorted(c.id for c in make_chunks(plan_sweep(resumed))) == CHUNKS_AAB1D17
    ids = sorted(c.id for c in make_chunks(plan_sweep(now)))
    assert len(ids) == 3 and not set(ids) & set(CHUNKS_AAB1D17)  # b_dec folded in every kind
    unfolded = compose_config([*then, "sae.fold_b_dec=false"])
    ids = sorted(c.id for c in make_chunks(plan_sweep(unfolded)))
    assert len(set(ids) & set(CHUNKS_AAB1D17)) == 1  # TopK's: only the codes moved the others
    # a sweep of kinds that do not read codes hashes as before whatever its value
    plain = [PARETO, "sweep.grid.kind=[topk,plain]"]
    assert config_hash(compose_config(plain)) == config_hash(
        compose_config([*plain, "sae.codes=unscaled"])
    )


def test_codes_is_a_static_axis_that_splits_programs_of_the_kinds_that_read_it():
    """``sweep.grid.codes``: one program per value for the kinds that read it (BatchTopK's
    SaeSpec.options), none for those that do not."""
    config = compose_config(
        [PARETO, "sweep.grid.kind=[topk,batchtopk]", "+sweep.grid.codes=[scaled,unscaled]"]
    )
    chunks = make_chunks(plan_sweep(config))
    options = sorted(
        (c.spec.spec.kind, c.spec.spec.option("codes") if c.spec.spec.kind != "topk" else "-")
        for c in chunks
    )
    assert options == [("batchtopk", "scaled"), ("batchtopk", "unscaled"), ("topk", "-")]
