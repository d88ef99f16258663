"""SAE scores (``toymodels.sae.metrics``) on constructed dictionaries and codes: MCC = 1 for the truth
and chance for random dictionaries, uniqueness, precision/recall/F1, absorption (per edge), hedging,
γ, FVU, composed latents."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.sae.metrics import (
    EvalSums,
    chance_mmcs,
    hedging,
    matches,
    max_cos_to_others,
    mcc,
    mmcs,
    n_composed,
    random_dictionary,
    scores,
    uniqueness,
)


def random_W(seed, n_hidden, n_features):
    return np.random.default_rng(seed).normal(size=(n_hidden, n_features))


def test_mmcs_is_one_for_the_true_directions_in_any_order_and_scale():
    W_HxF = jnp.asarray(random_W(0, 3, 5), jnp.float32)
    assert float(mmcs(W_HxF, W_HxF)) == pytest.approx(1.0, abs=1e-6)
    dictionary = jnp.concatenate(
        [2.5 * W_HxF[:, ::-1], jnp.asarray(random_W(1, 3, 4), jnp.float32)], axis=1
    )
    assert float(mmcs(W_HxF, dictionary)) == pytest.approx(1.0, abs=1e-6)
    assert float(mmcs(dictionary, W_HxF)) < 0.99  # the extra elements are not true features


def test_mmcs_skips_masked_entries_and_is_nan_when_nothing_is_left():
    true = jnp.eye(2)
    dictionary = jnp.asarray([[1.0, 1.0], [0.0, 1.0]])  # e1 and the diagonal
    assert float(mmcs(true, dictionary)) == pytest.approx((1 + 1 / np.sqrt(2)) / 2, abs=1e-6)
    assert float(mmcs(true, dictionary, jnp.array([True, False]))) == pytest.approx(1.0)
    assert float(mmcs(true, dictionary, dict_mask_D=jnp.array([False, True]))) == pytest.approx(
        1 / np.sqrt(2)
    )
    assert np.isnan(float(mmcs(true, dictionary, jnp.array([False, False]))))


def test_chance_mmcs_in_two_dimensions_matches_the_nearest_of_random_angles():
    """In 2-D the best of d uniform random directions is cos(smallest angle)."""
    angles = np.random.default_rng(0).uniform(-np.pi, np.pi, (100_000, 5))
    assert chance_mmcs(2, 5) == pytest.approx(np.cos(np.abs(angles)).max(axis=1).mean(), abs=0.01)
    assert chance_mmcs(2, 10) > chance_mmcs(2, 5) > chance_mmcs(3, 5)


def test_mcc_is_one_for_the_truth_in_any_order_sign_and_scale_and_chance_for_random():
    """SAELens's MCC: |cos|, a one-to-one Hungarian matching, the mean over min(D, F) pairs."""
    truth = random_W(0, 64, 48)
    shuffled = -3.0 * truth[:, np.random.default_rng(1).permutation(48)]
    assert mcc(shuffled, truth) == pytest.approx(1.0, abs=1e-6)
    assert mcc(np.concatenate([truth, random_W(2, 64, 16)], axis=1), truth) == pytest.approx(
        1.0, abs=1e-6
    )
    chance = [mcc(random_dictionary(64, 48, seed), truth) for seed in (10, 11, 12)]
    assert np.ptp(chance) < 0.02 and 0.1 < np.mean(chance) < 0.4  # a stable, low chance level
    half = np.concatenate([truth[:, :24], random_dictionary(64, 24, 5)], axis=1)
    assert mcc(half, truth) == pytest.approx((1 + np.mean(chance)) / 2, abs=0.05)
    # one-to-one: one true direction copied into four columns matches one of four features, not all
    assert mcc(np.repeat(truth[:, :1], 4, axis=1), truth[:, :4]) < 0.6


def test_mcc_drops_unrepresented_true_features():
    truth = np.eye(3)
    assert mcc(np.eye(3)[:, :2], truth, np.array([True, True, False])) == pytest.approx(1.0)
    assert np.isnan(mcc(np.eye(3), truth, np.zeros(3, bool)))


def hierarchy_sums():
    """Truth e0, e1, e2 with f1 a child of f0; decoder = truth, so latent j matches feature j.
    Four inputs: f0 alone; f0 with its child f1 (latent 0 silent: absorbed); f2 twice (latent 2
    fires on the first only). h = z, ĥ = h/2."""
    z_FxB = jnp.asarray([[1.0, 1.0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1.0, 2.0]])
    f_DxB = jnp.asarray([[1.0, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1.0, 0]])
    truth, parents = jnp.eye(3), jnp.asarray([-1, 0, -1])
    match_D, latent_F = matches(truth, jnp.eye(3), jnp.ones(3, bool))
    sums = EvalSums.zeros(3, 3, 3, hierarchy=True).add(
        z_FxB, z_FxB / 2, f_DxB, z_FxB, match_D, latent_F, parents, jnp.asarray(0.7)
    )
    return scores(
        sums, 1, jnp.eye(3), truth, jnp.ones(3, bool), match_D, jnp.zeros((0, 2), jnp.int32)
    ), z_FxB


def test_detection_scores_of_latents_against_their_matched_features():
    s, _ = hierarchy_sums()
    # precision 1 for every latent; recall 1/2, 1, 1/2; F1 2/3, 1, 2/3
    assert float(s.precision) == pytest.approx(1.0)
    assert float(s.recall) == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert float(s.f1) == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert float(s.l0) == pytest.approx(3 / 4) and float(s.true_l0) == pytest.approx(5 / 4)
    assert int(s.n_dead) == 0 and float(s.loss) == pytest.approx(0.7)


def test_absorption_counts_a_silent_parent_latent_while_its_child_fires():
    s, _ = hierarchy_sums()
    assert float(s.absorption) == pytest.approx(1.0)  # the one child event had latent 0 silent


def test_absorption_per_edge_counts_the_events_the_absorbing_latent_and_the_recall_gap():
    """The one edge (0 → 1): the child fires once, with latent 0 silent and latent 1 firing in its
    place; the parent fires once without the child, its latent firing then: recall 1 without the
    child, 0 with it (gap 1). Features without a parent have no edge (zero counts, no latent)."""
    s, _ = hierarchy_sums()
    np.testing.assert_array_equal(s.edge_child_events_F, [0, 1, 0])
    np.testing.assert_array_equal(s.edge_absorbed_F, [0, 1, 0])
    np.testing.assert_array_equal(s.edge_parent_only_F, [0, 1, 0])
    np.testing.assert_array_equal(s.edge_parent_only_hits_F, [0, 1, 0])
    np.testing.assert_array_equal(s.edge_absorbing_F, [-1, 1, -1])
    np.testing.assert_array_equal(s.edge_absorbing_count_F, [0, 1, 0])
    assert float(s.absorption_gap) == pytest.approx(1.0)


def test_absorption_per_edge_over_two_batches_and_a_partly_absorbed_child():
    """Parent 0 with children 1 and 2, 7 inputs with the parent: child 1 fires on 4, latent 0 silent
    on 1 of them (latent 3 fires then, not the child's latent 1); child 2 fires on 1, never absorbed.
    Without child 1 the parent's latent fires on 2 of 3 inputs, without child 2 on 4 of 6. Gaps:
    edge 0→1: 2/3 − 3/4; edge 0→2: 4/6 − 1."""
    truth, parents = jnp.eye(4), jnp.asarray([-1, 0, 0, -1])
    match_D, latent_F = matches(truth, jnp.eye(4), jnp.ones(4, bool))
    z1 = jnp.asarray([[1, 1, 1, 1.0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    f1 = jnp.asarray(
        [[1, 0, 1, 1.0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]
    )  # input 1: latent 3 for 0
    z2 = jnp.asarray([[1, 1, 1, 0.0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    f2 = jnp.asarray(
        [[1, 1, 0, 0.0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    )  # input 2: parent alone, missed
    sums = EvalSums.zeros(4, 4, 4, hierarchy=True)
    for z, f in ((z1, f1), (z2, f2)):
        sums = sums.add(z, z, f, z, match_D, latent_F, parents, jnp.asarray(0.0))
    s = scores(sums, 2, jnp.eye(4), truth, jnp.ones(4, bool), match_D, jnp.zeros((0, 2), jnp.int32))
    np.testing.assert_array_equal(s.edge_child_events_F, [0, 4, 1, 0])
    np.testing.assert_array_equal(s.edge_absorbed_F, [0, 1, 0, 0])
    np.testing.assert_array_equal(
        s.edge_parent_only_F, [0, 3, 6, 0]
    )  # the parent without child 1 / child 2
    np.testing.assert_array_equal(s.edge_parent_only_hits_F, [0, 2, 4, 0])
    np.testing.assert_array_equal(s.edge_absorbing_F, [-1, 3, -1, -1])
    gaps = [2 / 3 - 3 / 4, 4 / 6 - 1.0]
    assert float(s.absorption_gap) == pytest.approx(np.mean(gaps))
    assert float(s.absorption) == pytest.approx(1 / 5)


def test_uniqueness_is_distinct_best_matches_over_latents_not_a_matching():
    """SAELens's feature_uniqueness: 4 latents, two along f0 (one of them flipped: |cos|), one along
    f1, one nearest f2: 3 distinct best matches over 4 latents. A Hungarian matching would pair
    every latent with a distinct feature and give 1."""
    truth = np.eye(4)
    W = np.stack([truth[:, 0], -truth[:, 0], truth[:, 1], truth[:, 2] + 0.3 * truth[:, 3]], axis=1)
    assert uniqueness(W, truth) == pytest.approx(3 / 4)
    assert uniqueness(truth, truth) == pytest.approx(1.0)
    assert uniqueness(np.repeat(truth[:, :1], 8, axis=1), truth) == pytest.approx(1 / 8)
    assert uniqueness(W, truth, np.array([True, True, True, False])) == pytest.approx(3 / 4)


@pytest.mark.parametrize("q", [0.0, 0.3, 1.0])
def test_hedging_is_the_parent_latents_lean_into_the_childs_own_direction(q):
    """A parent p = e0 with a child c = (e0 + e1)/√2 (its own part: e1), and a latent along
    p + q e1, the decoder that minimises the error of a latent firing 1 with the parent when the
    child comes with it with probability q: hedging q/√(1 + q²). The child's own latent, if any,
    does not enter; a root has no edge (NaN)."""
    p, e1, e2 = np.eye(3)
    truth = np.stack([p, (p + e1) / np.sqrt(2), e2], axis=1)
    parents = np.array([-1, 0, -1])
    W = np.stack([p + q * e1, e2, truth[:, 1]], axis=1) if q else np.stack([p, e2], axis=1)
    got = hedging(W, truth, parents)
    assert np.isnan(got[0]) and np.isnan(got[2])
    assert got[1] == pytest.approx(q / np.sqrt(1 + q * q), abs=1e-9)


def test_reconstruction_scores_fvu_and_relative_bias():
    s, z = hierarchy_sums()
    h = np.asarray(z)
    centred = ((h - h.mean(axis=1, keepdims=True)) ** 2).sum()
    assert float(s.fvu) == pytest.approx(((h / 2) ** 2).sum() / centred, rel=1e-6)
    assert float(s.gamma) == pytest.approx(0.5, rel=1e-6)  # E‖ĥ‖² / E[ĥ·h] for ĥ = h/2
    assert float(s.h_var) == pytest.approx(centred / 4, rel=1e-6)
    assert float(s.mse) == pytest.approx(((h / 2) ** 2).mean(), rel=1e-6)


def test_dead_latents_and_no_hierarchy():
    z_FxB, f_DxB = jnp.eye(2), jnp.asarray([[1.0, 0.0], [0.0, 0.0]])
    match_D, latent_F = matches(jnp.eye(2), jnp.eye(2), jnp.ones(2, bool))
    sums = EvalSums.zeros(2, 2, 2).add(
        z_FxB, z_FxB, f_DxB, z_FxB, match_D, latent_F, None, jnp.asarray(0.0)
    )
    s = scores(
        sums, 1, jnp.eye(2), jnp.eye(2), jnp.ones(2, bool), match_D, jnp.zeros((0, 2), jnp.int32)
    )
    assert int(s.n_dead) == 1 and float(s.dead_fraction) == pytest.approx(0.5)
    # over more inputs (the long count) latent 1 fires once: not dead there
    s = scores(
        sums,
        1,
        jnp.eye(2),
        jnp.eye(2),
        jnp.ones(2, bool),
        match_D,
        jnp.zeros((0, 2), jnp.int32),
        long_fires_D=jnp.asarray([7.0, 1.0]),
    )
    assert int(s.n_dead) == 1 and int(s.n_dead_long) == 0 and float(s.dead_fraction_long) == 0.0
    assert s.edge_absorbed_F.shape == (0,) and np.isnan(float(s.absorption_gap))
    assert float(s.f1) == pytest.approx(0.5)  # the dead latent scores 0
    assert np.isnan(float(s.absorption))


def test_composed_latents_are_counted_at_cosine_095():
    truth = jnp.eye(3)
    composed = jnp.asarray([1.0, 0.0, 1.0]) / math.sqrt(2)
    near = jnp.asarray([1.0, 0.2, 1.0]) / jnp.linalg.norm(jnp.asarray([1.0, 0.2, 1.0]))  # cos 0.990
    far = jnp.asarray([1.0, 0.5, 1.0]) / 1.5  # cos 0.943
    W = jnp.stack([truth[:, 0], composed, near, far], axis=1)
    assert int(n_composed(W, truth, jnp.asarray([[0, 2]]))) == 2
    assert int(n_composed(W, truth, jnp.zeros((0, 2), jnp.int32))) == 0


def test_max_cosine_to_other_latents_for_truth_and_random_dictionaries():
    np.testing.assert_allclose(max_cos_to_others(np.eye(4)), 0.0)
    W = np.array([[1.0, 0.6, 0.0], [0.0, 0.8, 1.0]])
    np.testing.assert_allclose(max_cos_to_others(W), [0.6, 0.8, 0.8])
    np.testing.assert_allclose(max_cos_to_others(jnp.asarray(W)), [0.6, 0.8, 0.8], rtol=1e-6)
    random = max_cos_to_others(random_dictionary(16, 64))
    assert 0.5 < random.mean() < 0.9  # 64 random directions in 16 dimensions crowd each other
