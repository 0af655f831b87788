"""Coupling basis and symmetric contraction: equivariance, symmetry, span of mace's basis, brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from e3nn import o3
from graphs import FIXTURES

from mlip.nn.contraction import SymmetricContraction
from mlip.nn.coupling import basis_transform, symmetric_coupling_basis


def _random_angles(seed: int):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand((), generator=g, dtype=torch.float64) * 3.0 + 0.1 for _ in range(3)]


def _D(irreps: str, angles, k: int) -> torch.Tensor:
    """Representation of ``R(angles) * (-1)^k``, fitted exactly from e3nn's spherical harmonics.

    (e3nn's ``D_from_angles`` agrees with its spherical harmonics only to ~1e-7.)
    """
    R = o3.angles_to_matrix(*angles)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(64, 3, generator=g, dtype=torch.float64)
    blocks = []
    for mul, ir in o3.Irreps(irreps):
        Y = o3.spherical_harmonics(ir.l, v, normalize=True)
        Yr = o3.spherical_harmonics(ir.l, v @ R.T, normalize=True)
        D = torch.linalg.lstsq(Y, Yr).solution.T * (ir.p**k)
        blocks += [D] * mul
    return torch.block_diag(*blocks)


@pytest.mark.parametrize("nu", [1, 2, 3, 4])
@pytest.mark.parametrize("L", ["0e", "1o", "2e"])
def test_basis_equivariant_and_symmetric(nu, L):
    irreps = "0e+1o+2e"
    U = symmetric_coupling_basis(irreps, L, nu)
    assert U.shape[-1] > 0
    for k in (0, 1):
        angles = _random_angles(k)
        Din = _D(irreps, angles, k)
        Dout = _D(L, angles, k)
        rotated = U
        for axis in range(1, nu + 1):  # apply Din on every input axis
            rotated = torch.movedim(torch.tensordot(rotated, Din, dims=([axis], [0])), -1, axis)
        lhs = torch.einsum("mn,n...->m...", Dout, U)
        torch.testing.assert_close(rotated, lhs, rtol=0, atol=1e-10)
    for perm in itertools.permutations(range(nu)):
        torch.testing.assert_close(U.permute(0, *[1 + p for p in perm], nu + 1), U, rtol=0, atol=1e-12)
    # linearly independent
    flat = U.reshape(-1, U.shape[-1])
    assert torch.linalg.matrix_rank(flat) == U.shape[-1]


def test_basis_dimension_counts_invariants():
    """Number of symmetric invariants of (0e+1o) (x) nu, by hand: nu=2: (0e0e, 1o1o) -> 2; nu=3: 0e^3, 0e 1o 1o -> 2."""
    assert symmetric_coupling_basis("0e+1o", "0e", 2).shape[-1] == 2
    assert symmetric_coupling_basis("0e+1o", "0e", 3).shape[-1] == 2
    # odd scalar from three vectors is antisymmetric (triple product) -> not in the symmetric space
    assert symmetric_coupling_basis("1o", "0o", 3).shape[-1] == 0


def test_spans_mace_bases():
    d = np.load(FIXTURES / "off_residual" / "state_dict.npz")
    for o, L in enumerate(["0e", "1o"]):
        for nu in (1, 2, 3):
            U_m = torch.tensor(d[f"products.0.symmetric_contractions.contractions.{o}.U_matrix_{nu}"])
            _, resid = basis_transform(symmetric_coupling_basis("0e+1o+2e+3o", L, nu), U_m, nu)
            assert resid < 1e-12


@pytest.mark.parametrize("strategy", ["horner", "features", "monomial", "mixed"])
@pytest.mark.parametrize("correlation,num_elements", [(1, 2), (2, 3), (3, 2), (3, 20), (4, 1)])
def test_contraction_matches_brute_force(correlation, num_elements, strategy):
    torch.manual_seed(1)
    C = 3
    irreps_in = o3.Irreps(f"{C}x0e + {C}x1o + {C}x2e")
    irreps_out = o3.Irreps(f"{C}x0e + {C}x1o")
    sc = SymmetricContraction(irreps_in, irreps_out, correlation, num_elements, strategy=strategy).double()
    N = 7
    x = torch.randn(N, irreps_in.dim, dtype=torch.float64)
    element = torch.randint(0, num_elements, (N,))
    out = sc(x, element)
    # brute force: a[n, c, k] in (0e, 1o, 2e) order; sum_nu sum_p W U x..x
    a = torch.cat([x[:, :C].reshape(N, C, 1), x[:, C : 4 * C].reshape(N, C, 3), x[:, 4 * C :].reshape(N, C, 5)], -1)
    expected = []
    for o, (_, ir) in enumerate(irreps_out):
        total = torch.zeros(N, C, ir.dim, dtype=torch.float64)
        for nu in range(1, correlation + 1):
            U = symmetric_coupling_basis("0e+1o+2e", str(ir), nu)
            W = sc.weight(o, nu)[element]  # [N, P, C]
            power = a
            for _ in range(nu - 1):  # a (x) a (x) .. per atom and channel: [N, C, K^nu]
                power = (power.unsqueeze(-1) * a.unsqueeze(-2)).reshape(N, C, -1)
            K = a.shape[-1]
            total = total + torch.einsum("mip,nci,npc->ncm", U.reshape(ir.dim, K**nu, -1), power, W)
        expected.append(total.reshape(N, -1))
    torch.testing.assert_close(out, torch.cat(expected, -1), rtol=1e-10, atol=1e-10)


def test_contraction_equivariant():
    torch.manual_seed(2)
    irreps_in = o3.Irreps("4x0e + 4x1o + 4x2e + 4x3o")
    irreps_out = o3.Irreps("4x0e + 4x1o + 4x2e")
    sc = SymmetricContraction(irreps_in, irreps_out, 3, 2).double()
    assert sc.strategy == "monomial"
    x = torch.randn(5, irreps_in.dim, dtype=torch.float64)
    el = torch.tensor([0, 1, 1, 0, 1])
    angles = _random_angles(5)
    lhs = sc(x @ _D(str(irreps_in), angles, 1).T, el)
    rhs = sc(x, el) @ _D(str(irreps_out), angles, 1).T
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-10)


def test_mixed_uses_present_elements_only():
    """``mixed`` with the elements present, a superset of them, or found itself: the numbers of ``monomial``."""
    torch.manual_seed(3)
    irreps_in, irreps_out = "4x0e + 4x1o + 4x2e + 4x3o", "4x0e + 4x1o"
    sc = SymmetricContraction(irreps_in, irreps_out, 3, 5, strategy="mixed").double()
    ref = SymmetricContraction(irreps_in, irreps_out, 3, 5, strategy="monomial").double()
    ref.load_state_dict(sc.state_dict())
    x = torch.randn(9, o3.Irreps(irreps_in).dim, dtype=torch.float64)
    for element, present in [
        (torch.full((9,), 3), torch.tensor([3])),
        (torch.tensor([1, 4, 4, 1, 1, 4, 1, 1, 4]), torch.tensor([1, 4])),
        (torch.tensor([1, 4, 4, 1, 1, 4, 1, 1, 4]), torch.tensor([0, 1, 2, 4])),
        (torch.tensor([2, 0, 4, 1, 1, 3, 1, 1, 4]), None),
    ]:
        expected = ref(x, element)
        torch.testing.assert_close(sc(x, element, present), expected, rtol=0, atol=1e-12)
    # a domain without atoms (a LAMMPS rank over vacuum): nothing present, an empty result
    assert sc(x[:0], element[:0]).shape == (0, o3.Irreps(irreps_out).dim)
    # the second derivative (forces in a training loss) agrees too
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    grads = []
    for module, xi in zip((sc, ref), xs):
        (g,) = torch.autograd.grad((module(xi, element) ** 2).sum(), xi, create_graph=True)
        (gw,) = torch.autograd.grad((g**2).sum(), module.weight(1, 3))
        grads.append((g, gw))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=1e-10)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-10, atol=1e-10)


def test_auto_weighs_mixed_by_elements_present():
    """MACE-MP's first product (89 elements): compiled, ``mixed`` for one or two elements present; eager (each atom
    meets its own element's coefficients), whenever the atoms outweigh the present elements' coefficients."""
    sc = SymmetricContraction("64x0e + 64x1o + 64x2e + 64x3o", "64x0e + 64x1o", 3, 89)
    assert sc.strategy == "monomial"
    assert sc.mixed_cost(1) < sc.mixed_cost(3) < sc.static_cost["compiled"] < sc.mixed_cost(5)
    assert sc.mixed_cost(5, grouped=True) == sc.mixed_cost(1) < sc.static_cost["eager"]
    assert sc.mixed_limit == {"eager": 89, "compiled": 2}
    calls = []
    sc._mixed = lambda a, el, present: calls.append(present.shape[0]) or torch.zeros(a.shape[0], sc.irreps_out.dim)
    x = torch.randn(40, sc.irreps_in.dim)
    sc(x[:12], torch.tensor([5, 5, 7, 5] * 3))  # 2 elements, 12 atoms: mixed
    sc(x[:4], torch.tensor([5, 5, 7, 5]))  # 2 elements' coefficients for 4 atoms: static
    sc(x[:4], torch.tensor([5, 6, 7, 8]), torch.arange(20))  # 20 elements' coefficients for 4 atoms: static
    sc(x, torch.arange(40) % 8)  # 8 elements, 40 atoms: mixed
    assert calls == [2, 8]
    assert 20 * sc.coefficient_cost > 4 * (sc.static_cost["eager"] - sc.mixed_cost(1, grouped=True))
