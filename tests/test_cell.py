"""lstm1997.LSTMCell against torch.nn.LSTMCell (forget gate pinned open) and the reference loop."""
import pytest
import torch
from reference import drop_forget_rows, pinned_torch_like, reference_lstm

import lstm1997

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

I, H, B = 3, 5, 4


def close(a, b, tol=1e-10):
    return a.shape == b.shape and (a - b).abs().max().item() <= tol


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_step_and_exact_gradients_equal_nn_lstm_cell(bias, with_hx):
    torch.manual_seed(0)
    cell = lstm1997.LSTMCell(I, H, bias=bias, truncate=False, dtype=torch.float64)
    theirs = pinned_torch_like(cell)
    x = torch.randn(B, I, dtype=torch.float64)
    hx = (torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)) if with_hx else None
    leaves = lambda: [x.clone().requires_grad_()] + ([t.clone().requires_grad_() for t in hx] if hx else [])
    ours_in, theirs_in = leaves(), leaves()
    h, s = cell(ours_in[0], tuple(ours_in[1:]) or None)
    th, tc = theirs(theirs_in[0], tuple(theirs_in[1:]) or None)
    assert close(h, th) and close(s, tc)
    (h.pow(2).sum() + 3 * s.sum()).backward()
    (th.pow(2).sum() + 3 * tc.sum()).backward()
    for a, b in zip(ours_in, theirs_in):
        assert close(a.grad, b.grad)
    their_params = dict(theirs.named_parameters())
    for name, p in cell.named_parameters():
        assert close(p.grad, drop_forget_rows(their_params[name].grad)), name


def test_truncated_step_sends_no_error_to_previous_h():
    torch.manual_seed(1)
    cell = lstm1997.LSTMCell(I, H, dtype=torch.float64)
    x = torch.randn(B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    h, s = cell(x, (h0, s0))
    (h.sum() + s.sum()).backward()
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    x_ref, s0_ref = x.detach().clone().requires_grad_(), s0.detach().clone().requires_grad_()
    _, rh, rs = reference_lstm(x_ref.unsqueeze(0), *params, h0.detach(), s0_ref, truncate=True)
    (rh.sum() + rs.sum()).backward()
    assert torch.equal(h0.grad, torch.zeros_like(h0))
    assert close(x.grad, x_ref.grad) and close(s0.grad, s0_ref.grad)
    for p, ref in zip(cell.parameters(), params):
        assert close(p.grad, ref.grad)


def test_unbatched_cell_and_a_loop_of_cells_equals_the_layer():
    torch.manual_seed(2)
    cell = lstm1997.LSTMCell(I, H, activation="paper", dtype=torch.float64)
    layer = lstm1997.LSTM(I, H, activation="paper", dtype=torch.float64)
    layer.load_state_dict({f"{n}_l0": p for n, p in cell.state_dict().items()})
    x = torch.randn(7, I, dtype=torch.float64)
    h = s = torch.zeros(H, dtype=torch.float64)
    outputs = []
    for t in range(7):
        h, s = cell(x[t], (h, s))
        assert h.shape == s.shape == (H,)
        outputs.append(h)
    expected, (h_n, s_n) = layer(x)
    assert close(torch.stack(outputs), expected, 1e-12) and close(s, s_n[0], 1e-12)


def test_cell_conversions_and_repr():
    torch.manual_seed(3)
    cell = lstm1997.LSTMCell(I, H, bias=False, dtype=torch.float64)
    theirs = cell.to_torch_lstm_cell()
    x = torch.randn(B, I, dtype=torch.float64)
    assert close(cell(x)[0], theirs(x)[0])
    with pytest.warns(UserWarning, match="forget gates of the LSTMCell are dropped"):
        back = lstm1997.LSTMCell.from_torch_lstm_cell(torch.nn.LSTMCell(I, H))
    assert back.weight_ih.shape == (3 * H, I)
    assert repr(cell) == "LSTMCell(3, 5, bias=False, truncate=True, activation='tanh')"


def test_cell_errors():
    cell = lstm1997.LSTMCell(I, H)
    with pytest.raises(ValueError, match=r"LSTMCell: input: expected a 2-D .* or 1-D"):
        cell(torch.zeros(2, B, I))
    with pytest.raises(RuntimeError, match=r"LSTMCell: hx \(h\): expected shape \[4, 5\], got \[4, 6\]"):
        cell(torch.zeros(B, I), (torch.zeros(B, H + 1), torch.zeros(B, H)))
    with pytest.raises(RuntimeError, match=r"LSTMCell: hx \(s\): expected shape \[5\]"):
        cell(torch.zeros(I), (torch.zeros(H), torch.zeros(B, H)))
    with pytest.raises(ValueError, match=r"LSTMCell: hidden_size: expected a positive int"):
        lstm1997.LSTMCell(I, 0)
    with pytest.raises(ValueError, match=r"LSTMCell: activation: expected one of"):
        lstm1997.LSTMCell(I, H, activation="sigmoid")
    with pytest.raises(ValueError, match=r'to_torch_lstm_cell: activation: expected "tanh"'):
        lstm1997.LSTMCell(I, H, activation="paper").to_torch_lstm_cell()
