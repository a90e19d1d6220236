"""float16 and bfloat16: computed with float32 arithmetic and float32 carries through time, stored
in the half type.

Tolerance: every stored tensor (weights, inputs, gates, outputs) is rounded to the half type, a
relative error of eps/2 (eps = 2**-10 for float16, 2**-7 for bfloat16). The pointwise math and the
carries through time (the cell state and its error) run in float32, so the rounding does not
compound along the sequence: over 5 seeds at T=20, two layers, both directions, the largest
output error measured was about 2 eps (1.9e-3 float16, 1.5e-2 bfloat16), and the relative error of
the gradients 2 eps. The tests allow 8 eps.
"""
import pytest
import torch

import lstm1997

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_half_types_match_float64_within_tolerance(dtype, truncate, seed):
    torch.manual_seed(seed)
    module = lstm1997.LSTM(16, 32, num_layers=2, bidirectional=True, truncate=truncate).to(dtype)
    x = torch.randn(20, 8, 16).to(dtype)
    reference = lstm1997.LSTM(16, 32, num_layers=2, bidirectional=True, truncate=truncate).double()
    reference.load_state_dict(module.state_dict())  # the same, already rounded, values

    output, (h_n, s_n) = module(x)
    expected, (expected_h, expected_s) = reference(x.double())
    assert output.dtype == h_n.dtype == s_n.dtype == dtype
    tol = 8 * EPS[dtype]
    assert (output.double() - expected).abs().max() < tol
    assert (h_n.double() - expected_h).abs().max() < tol
    assert ((s_n.double() - expected_s).abs().max() / expected_s.abs().max()) < tol

    output.float().pow(2).sum().backward()
    expected.pow(2).sum().backward()
    for (name, p), ref in zip(module.named_parameters(), reference.parameters()):
        assert p.grad.dtype == dtype
        relative = (p.grad.double() - ref.grad).norm() / ref.grad.norm()
        assert relative < tol, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cell_state_accumulates_in_float32(dtype):
    """s grows by 1 per step for 3000 steps: in the half type alone, s + 1 stops changing at 2048
    (float16) or 256 (bfloat16); the float32 carry keeps counting."""
    x = torch.ones(3000, 1, 1, dtype=dtype)
    # Open gates (sigmoid(1e4) = 1), cell input g(z) = tanh(1e4) = 1: s_t = s_{t-1} + 1.
    weight_ih = torch.full((3, 1), 1e4, dtype=dtype)
    weight_hh = torch.zeros(3, 1, dtype=dtype)
    _, _, s_n = lstm1997.lstm(x, weight_ih, weight_hh)
    assert s_n.float().item() == pytest.approx(3000, rel=EPS[dtype])


def test_module_dtype_conversions():
    module = lstm1997.LSTM(3, 4, num_layers=2)
    for convert, dtype in ((module.half, torch.float16), (module.bfloat16, torch.bfloat16),
                           (module.double, torch.float64), (module.float, torch.float32)):
        convert()
        output, (h_n, s_n) = module(torch.randn(5, 2, 3, dtype=dtype))
        assert output.dtype == h_n.dtype == s_n.dtype == dtype
