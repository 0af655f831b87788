"""LLPR against closed forms: Bayesian linear regression, the model's own energy, finite differences, calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from u_support import molecule, tiny_model

from mlip.uncertainty import (
    calibrate,
    difference_sigma,
    predictive_variance,
    readout_weights,
)
from mlip.uncertainty.llpr import LLPR, HeadLLPR, accumulate_gram, iter_batches
from mlip.uncertainty.predict import evaluate_with_features


def test_predictive_variance_is_bayesian_linear_regression():
    """alpha^2 f^T (F^T F + lambda I)^-1 f = f^T Sigma_post f with prior N(0, s_p^2 I), noise s_n^2,
    alpha^2 = s_n^2, lambda = s_n^2 / s_p^2 (Bishop, PRML eq. 3.54/3.59)."""
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(40, 6)) * np.array([3.0, 1.0, 0.5, 0.1, 2.0, 0.01])
    f_new = rng.normal(size=(7, 6))
    s_n, s_p = 0.3, 2.0
    post = np.linalg.inv(phi.T @ phi / s_n**2 + np.eye(6) / s_p**2)
    expected = np.einsum("np,pq,nq->n", f_new, post, f_new)
    got = predictive_variance(torch.tensor(f_new), torch.tensor(phi.T @ phi), s_n**2, s_n**2 / s_p**2)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_features_reproduce_the_model_energy():
    """E_interaction - shift * N = f . w exactly (the energy is linear in the last-layer weights), two heads."""
    rng = np.random.default_rng(2)
    model = tiny_model(heads=("a", "b"))
    configs = [molecule(rng, 4 + k % 3, head="ab"[k % 2]) for k in range(6)]
    batch = next(iter_batches(model, configs, 6))
    out = evaluate_with_features(model, batch, compute_forces=False)
    ref = model(batch, compute_forces=False)
    n_atoms = torch.bincount(batch["batch"]).double()
    linear = (out["features"] * readout_weights(model)[batch["head"]]).sum(dim=1)
    assert linear.abs().max() > 0.1  # non-trivial
    torch.testing.assert_close(ref["interaction_energy"] - model.shift[batch["head"]] * n_atoms, linear,
                               rtol=1e-12, atol=1e-12)


def test_llpr_equals_flat_prior_regression_in_the_raw_weights():
    """LLPR of the tiny MACE (lambda -> 0) = Bayesian linear regression on the raw readout parameters,
    with features taken independently as dE/dtheta by autograd (reparametrisation invariant for lambda = 0)."""
    rng = np.random.default_rng(3)
    model = tiny_model(seed=1)
    train = [molecule(rng, 5) for _ in range(30)]
    test = [molecule(rng, 6) for _ in range(4)]
    gram, _ = accumulate_gram(model, iter_batches(model, train, 8))
    params = [model.readouts[0].linear.weight, model.readouts[1].linear_2.weight]

    def raw_jacobian(configs):
        rows = []
        for c in configs:
            batch = next(iter_batches(model, [c], 1))
            with torch.enable_grad():
                energy = model(batch, compute_forces=False)["energy"].sum()
                grads = torch.autograd.grad(energy, params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        return torch.stack(rows).numpy()

    j_train, j_test = raw_jacobian(train), raw_jacobian(test)
    assert j_train.shape[1] == gram.shape[1]
    s_n2 = 0.04
    expected = s_n2 * np.einsum("np,pq,nq->n", j_test, np.linalg.inv(j_train.T @ j_train), j_test)
    feats = evaluate_with_features(model, next(iter_batches(model, test, 8)), compute_forces=False)["features"]
    got = predictive_variance(feats, gram[0], s_n2, 1e-12 * float(gram[0].diagonal().max()))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_force_variances_match_finite_differences():
    """sigma^2(F_a) = g_a^T A g_a with g_a = df/dr_a by central differences of the features (independent of the VJPs)."""
    rng = np.random.default_rng(4)
    model = tiny_model(seed=2)
    gram, _ = accumulate_gram(model, iter_batches(model, [molecule(rng, 5) for _ in range(20)], 10))
    llpr = LLPR({"Default": HeadLLPR(gram[0], readout_weights(model)[0], 20, alpha2=0.7, reg=0.05)})
    config = molecule(rng, 5)
    batch = next(iter_batches(model, [config], 1))
    out = llpr.potential(model)(batch)
    cov = 0.7 * torch.linalg.inv(gram[0] + 0.05 * torch.eye(gram.shape[1], dtype=torch.float64))
    h = 1e-5
    expected = np.zeros((5, 3))
    for i in range(5):
        for a in range(3):
            diff = []
            for sign in (1, -1):
                b = {k: v.clone() for k, v in batch.items()}
                b["positions"][i, a] += sign * h
                diff.append(evaluate_with_features(model, b, compute_forces=False)["features"][0])
            g = (diff[0] - diff[1]) / (2 * h)
            expected[i, a] = float(g @ cov @ g)
    np.testing.assert_allclose(out["forces_variance"].numpy(), expected, rtol=1e-6, atol=1e-12)
    e_var = float(out["features"][0] @ cov @ out["features"][0])
    assert float(out["energy_uncertainty"][0]) ** 2 == pytest.approx(e_var, rel=1e-10)


def test_calibration_recovers_known_alpha_and_lambda():
    """Errors drawn from N(0, alpha^2 f^T (H0 + lambda I)^-1 f): maximum likelihood finds alpha (and lambda)."""
    rng = np.random.default_rng(5)
    scales = np.array([10.0, 3.0, 1.0, 0.3, 0.1, 0.03])
    train = rng.normal(size=(100, 6)) * scales
    gram = torch.tensor(train.T @ train)
    alpha2_true, reg_true = 0.25, 2.0
    valid = torch.tensor(rng.normal(size=(4000, 6)) * scales * rng.uniform(0.2, 3.0, (4000, 1)))
    sigma = predictive_variance(valid, gram, alpha2_true, reg_true).sqrt()
    errors = sigma * torch.tensor(rng.normal(size=4000))
    d, u = torch.linalg.eigh(gram)
    cal = calibrate(valid @ u, errors, d)
    assert cal.alpha2 == pytest.approx(alpha2_true, rel=0.1)
    assert 0.5 * reg_true < cal.reg < 2.0 * reg_true
    fixed = calibrate(valid @ u, errors, d, reg=reg_true)
    assert fixed.alpha2 == pytest.approx(alpha2_true, rel=0.06)
    assert fixed.nll >= cal.nll - 1e-12  # the free lambda is at least as likely


def test_energy_difference_sigma_closed_form():
    rng = np.random.default_rng(6)
    f = torch.tensor(rng.normal(size=(5, 4)))
    gram = torch.tensor(np.cov(rng.normal(size=(4, 50))) * 50)
    sig = difference_sigma(f, gram, 0.3, 0.1)
    inv = np.linalg.inv(gram.numpy() + 0.1 * np.eye(4))
    for i in range(5):
        for j in range(5):
            d = (f[i] - f[j]).numpy()
            assert float(sig[i, j]) == pytest.approx(np.sqrt(0.3 * d @ inv @ d), rel=1e-10, abs=1e-12)


def test_sampled_force_variances_are_unbiased():
    """force_samples=K: K random directions L omega / sqrt(K); the mean over seeds approaches the exact variance,
    energy sigmas stay exact."""
    rng = np.random.default_rng(7)
    model = tiny_model(seed=2)
    gram, _ = accumulate_gram(model, iter_batches(model, [molecule(rng, 5) for _ in range(20)], 10))
    llpr = LLPR({"Default": HeadLLPR(gram[0], readout_weights(model)[0], 20, alpha2=0.7, reg=0.05)})
    batch = next(iter_batches(model, [molecule(rng, 6), molecule(rng, 4)], 2))
    exact = llpr.potential(model)(batch)
    totals = []
    for seed in range(40):
        llpr.force_samples, llpr.sample_seed = 8, seed
        sampled = llpr.potential(model)(batch)
        torch.testing.assert_close(sampled["energy_uncertainty"], exact["energy_uncertainty"])
        totals.append(float(sampled["forces_variance"].sum()))
    # 40 x 8 = 320 directions: the mean total variance is within a few percent (tolerance ~3 standard errors)
    assert np.mean(totals) == pytest.approx(float(exact["forces_variance"].sum()), rel=0.12)
    assert np.std(totals) > 0  # really sampled


def test_batched_and_looped_vector_jacobian_products_agree():
    """The vmap path (used on CUDA) and the loop (CPU) give the same derivatives."""
    from mlip.uncertainty.predict import _batched_vjp

    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = torch.stack([torch.sin(x).sum(0) @ y[0] @ y[1], (x**2).sum(0) @ y[1] @ y[0]])  # [B=2, K=3]
    looped = _batched_vjp(out, [x, y], 3, batched=False)
    vmapped = _batched_vjp(out, [x, y], 3, batched=True)
    for a, b in zip(looped, vmapped):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda x_: torch.stack([torch.sin(x_).sum(0) @ y[0] @ y[1],
                                                                     (x_**2).sum(0) @ y[1] @ y[0]]), x)
    torch.testing.assert_close(looped[0], jac.sum(0).detach(), rtol=1e-12, atol=1e-12)
