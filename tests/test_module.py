"""lstm1997.LSTM as a drop-in for torch.nn.LSTM, and the conversions between the two."""
import math
import warnings

import pytest
import torch
from reference import drop_forget_rows, pinned_torch_lstm, reference_lstm

import lstm1997


def test_parameters_named_and_shaped_like_nn_lstm():
    module = lstm1997.LSTM(5, 7)
    torch_lstm = torch.nn.LSTM(5, 7)
    ours = {name: tuple(p.shape) for name, p in module.named_parameters()}
    theirs = {name: (p.shape[0] * 3 // 4, *p.shape[1:]) for name, p in torch_lstm.named_parameters()}
    assert ours == theirs == {
        "weight_ih_l0": (21, 5), "weight_hh_l0": (21, 7), "bias_ih_l0": (21,), "bias_hh_l0": (21,)
    }
    assert [name for name, _ in lstm1997.LSTM(5, 7, bias=False).named_parameters()] == [
        "weight_ih_l0", "weight_hh_l0"
    ]


def test_initialisation_uniform_like_nn_lstm():
    torch.manual_seed(0)
    hidden = 64
    module = lstm1997.LSTM(32, hidden)
    bound = 1 / math.sqrt(hidden)
    values = torch.cat([p.detach().flatten() for p in module.parameters()])
    assert values.abs().max() <= bound
    assert values.min() < -0.95 * bound and values.max() > 0.95 * bound
    assert abs(values.mean().item()) < 0.05 * bound
    # Uniform on [-b, b] has standard deviation b / sqrt(3).
    assert values.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_forward_equals_pinned_nn_lstm(dtype, bias, with_hx):
    torch.manual_seed(1)
    module = lstm1997.LSTM(4, 6, bias=bias, dtype=dtype)
    x = torch.randn(9, 3, 4, dtype=dtype)
    hx = (torch.randn(1, 3, 6, dtype=dtype), torch.randn(1, 3, 6, dtype=dtype)) if with_hx else None
    output, (h_n, s_n) = module(x, hx)
    reference = pinned_torch_lstm(module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0,
                                  module.bias_hh_l0)
    expected, (expected_h, expected_c) = reference(x, hx)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert output.shape == expected.shape and h_n.shape == expected_h.shape == (1, 3, 6)
    assert torch.allclose(output, expected, atol=tol, rtol=0)
    assert torch.allclose(h_n, expected_h, atol=tol, rtol=0)
    assert torch.allclose(s_n, expected_c, atol=tol, rtol=0)


def test_unbatched_input():
    torch.manual_seed(2)
    module = lstm1997.LSTM(3, 5).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    hx = (torch.randn(1, 5, dtype=torch.float64), torch.randn(1, 5, dtype=torch.float64))
    output, (h_n, s_n) = module(x, hx)
    assert output.shape == (6, 5) and h_n.shape == s_n.shape == (1, 5)
    batched, (bh, bs) = module(x.unsqueeze(1), (hx[0].unsqueeze(1), hx[1].unsqueeze(1)))
    assert torch.equal(output, batched.squeeze(1))
    assert torch.equal(h_n, bh.squeeze(1)) and torch.equal(s_n, bs.squeeze(1))


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
def test_module_gradients_equal_reference_loop(truncate, activation):
    torch.manual_seed(3)
    module = lstm1997.LSTM(4, 5, truncate=truncate, activation=activation).double()
    x = torch.randn(8, 2, 4, dtype=torch.float64)
    output, (h_n, s_n) = module(x)
    (output.pow(2).sum() + s_n.sum()).backward()
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    ref_out, _, ref_s = reference_lstm(x, *params, truncate=truncate, activation=activation)
    (ref_out.pow(2).sum() + ref_s.sum()).backward()
    for p, ref in zip(module.parameters(), params):
        assert torch.allclose(p.grad, ref.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_to_torch_lstm_computes_the_same_function(bias):
    torch.manual_seed(4)
    module = lstm1997.LSTM(4, 6, bias=bias).double()
    torch_lstm = module.to_torch_lstm()
    assert isinstance(torch_lstm, torch.nn.LSTM) and torch_lstm.weight_ih_l0.dtype == torch.float64
    x = torch.randn(10, 2, 4, dtype=torch.float64)
    hx = (torch.randn(1, 2, 6, dtype=torch.float64), torch.randn(1, 2, 6, dtype=torch.float64))
    output, (h_n, s_n) = module(x, hx)
    expected, (expected_h, expected_c) = torch_lstm(x, hx)
    assert torch.allclose(output, expected, atol=1e-12, rtol=0)
    assert torch.allclose(s_n, expected_c, atol=1e-12, rtol=0)
    for name, ours in module.named_parameters():
        assert torch.equal(drop_forget_rows(getattr(torch_lstm, name)), ours)


def test_from_torch_lstm_drops_the_forget_gate_with_a_warning():
    torch.manual_seed(5)
    torch_lstm = torch.nn.LSTM(3, 4)
    with pytest.warns(UserWarning, match="forget gates .* dropped"):
        module = lstm1997.LSTM.from_torch_lstm(torch_lstm, truncate=False, activation="tanh")
    assert module.truncate is False
    for name, ours in module.named_parameters():
        assert torch.equal(ours, drop_forget_rows(getattr(torch_lstm, name)))


def test_round_trip_through_torch_is_silent_and_exact():
    torch.manual_seed(6)
    module = lstm1997.LSTM(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = lstm1997.LSTM.from_torch_lstm(module.to_torch_lstm())
    for (name, a), (_, b) in zip(module.named_parameters(), back.named_parameters()):
        assert torch.equal(a, b), name
    x = torch.randn(5, 2, 3)
    assert torch.equal(module(x)[0], back(x)[0])


def test_repr_state_dict_and_dtype_moves():
    module = lstm1997.LSTM(3, 4, bias=False, truncate=False, activation="paper")
    assert repr(module) == "LSTM(3, 4, bias=False, truncate=False, activation='paper')"
    assert repr(lstm1997.LSTM(3, 4)) == "LSTM(3, 4, truncate=True, activation='tanh')"
    other = lstm1997.LSTM(3, 4, bias=False)
    other.load_state_dict(module.state_dict())
    assert torch.equal(other.weight_hh_l0, module.weight_hh_l0)
    doubled = module.double()
    assert all(p.dtype == torch.float64 for p in doubled.parameters())
    output, (h_n, s_n) = doubled(torch.randn(2, 1, 3, dtype=torch.float64))
    assert output.dtype == h_n.dtype == s_n.dtype == torch.float64
