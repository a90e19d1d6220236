"""lstm1997.LSTM as a drop-in for torch.nn.LSTM: parameters and their initialisation, every
configuration (layers, directions, batch_first, biases, packed or padded input, with or without hx),
dropout, dtype moves, the conversions between the two modules, and the module's input errors.

Forward and exact-mode gradients are compared with torch.nn.LSTM (forget gates pinned open);
truncated-mode gradients with reference_lstm / reference_stack, which run each sequence alone in a
plain loop."""
import contextlib
import itertools
import math
import warnings

import pytest
import torch
from reference import (drop_forget_rows, pinned_torch_like, pinned_torch_lstm, reference_lstm,
                       reference_stack)
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstm1997

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

I, H, T, B = 3, 4, 6, 4
LENGTHS = {"padded": [T] * B, "packed": [6, 5, 3, 1], "packed-unsorted": [3, 6, 1, 5]}
CONFIGS = list(itertools.product([1, 3], [False, True], [False, True], [True, False],
                                 list(LENGTHS), [False, True]))
IDS = [f"L{n}-{'bi' if d else 'uni'}-{'bf' if bf else 'tf'}-{'bias' if b else 'nobias'}-{lay}-{'hx' if hx else 'nohx'}"
       for n, d, bf, b, lay, hx in CONFIGS]


def make_case(num_layers, bidirectional, batch_first, bias, layout, with_hx, truncate, seed=0):
    torch.manual_seed(seed)
    module = lstm1997.LSTM(I, H, num_layers, bias=bias, batch_first=batch_first,
                           bidirectional=bidirectional, truncate=truncate, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)  # time-major, padded past each length
    stacked = num_layers * (2 if bidirectional else 1)
    hx = None
    if with_hx:
        hx = (torch.randn(stacked, B, H, dtype=torch.float64), torch.randn(stacked, B, H, dtype=torch.float64))
    return module, x, hx, LENGTHS[layout]


def run(module, x, hx, lengths, layout):
    """Calls a torch.nn.LSTM-like module as a user would; returns time-major padded output."""
    x_in = x.transpose(0, 1) if module.batch_first else x
    if layout == "padded":
        output, (h_n, s_n) = module(x_in, hx)
        if module.batch_first:
            output = output.transpose(0, 1)
        return output, h_n, s_n
    packed = pack_padded_sequence(x_in, torch.tensor(lengths), batch_first=module.batch_first,
                                  enforce_sorted=(layout == "packed"))
    output, (h_n, s_n) = module(packed, hx)
    assert isinstance(output, torch.nn.utils.rnn.PackedSequence)
    assert torch.equal(output.batch_sizes, packed.batch_sizes)
    padded, _ = pad_packed_sequence(output, total_length=T)
    return padded, h_n, s_n


def upstream(shapes, seed=7):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]


def loss_of(outputs, weights, lengths):
    output, h_n, s_n = outputs
    mask = (torch.arange(T).unsqueeze(1) < torch.tensor(lengths).unsqueeze(0)).unsqueeze(2)
    return (output * weights[0] * mask).sum() + (h_n * weights[1]).sum() + (s_n * weights[2]).sum()


def close(a, b, tol=1e-10):
    return a.shape == b.shape and (a - b).abs().max().item() <= tol


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_forward_and_exact_gradients_equal_nn_lstm(config):
    module, x, hx, lengths = make_case(*config, truncate=False)
    layout = config[4]
    theirs = pinned_torch_like(module)
    leaves = lambda: [x.clone().requires_grad_()] + ([t.clone().requires_grad_() for t in hx] if hx else [])

    ours_in, theirs_in = leaves(), leaves()
    ours_out = run(module, ours_in[0], tuple(ours_in[1:]) or None, lengths, layout)
    theirs_out = run(theirs, theirs_in[0], tuple(theirs_in[1:]) or None, lengths, layout)
    for a, b, name in zip(ours_out, theirs_out, ("output", "h_n", "s_n")):
        assert close(a, b), name

    weights = upstream([o.shape for o in ours_out])
    loss_of(ours_out, weights, lengths).backward()
    loss_of(theirs_out, weights, lengths).backward()
    for a, b in zip(ours_in, theirs_in):
        assert close(a.grad, b.grad)
    their_params = dict(theirs.named_parameters())
    for name, p in module.named_parameters():
        assert close(p.grad, drop_forget_rows(their_params[name].grad)), name


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_truncated_gradients_equal_reference(config):
    module, x, hx, lengths = make_case(*config, truncate=True)
    num_layers, bidirectional, layout = config[0], config[1], config[4]
    x_ours = x.clone().requires_grad_()
    hx_ours = tuple(t.clone().requires_grad_() for t in hx) if hx else None
    ours_out = run(module, x_ours, hx_ours, lengths, layout)

    params = {n: p.detach().clone().requires_grad_() for n, p in module.named_parameters()}
    x_ref = x.clone().requires_grad_()
    hx_ref = tuple(t.clone().requires_grad_() for t in hx) if hx else (None, None)
    outputs, h_n, s_n = reference_stack([x_ref[: lengths[b], b] for b in range(B)], params,
                                        num_layers, bidirectional, *hx_ref, truncate=True)
    padded = torch.zeros_like(ours_out[0])
    for b, out in enumerate(outputs):
        padded[: lengths[b], b] = out
    for a, b, name in zip(ours_out, (padded, h_n, s_n), ("output", "h_n", "s_n")):
        assert close(a, b), name

    weights = upstream([o.shape for o in ours_out])
    loss_of(ours_out, weights, lengths).backward()
    loss_of((padded, h_n, s_n), weights, lengths).backward()
    assert close(x_ours.grad, x_ref.grad)
    if hx:
        for a, b in zip(hx_ours, hx_ref):
            assert close(a.grad, b.grad if b.grad is not None else torch.zeros_like(b))
    for name, p in module.named_parameters():
        assert close(p.grad, params[name].grad), name


def test_unbatched_input_like_nn_lstm():
    torch.manual_seed(1)
    module = lstm1997.LSTM(I, H, num_layers=2, bidirectional=True, truncate=False, dtype=torch.float64)
    theirs = pinned_torch_like(module)
    x = torch.randn(T, I, dtype=torch.float64)
    hx = (torch.randn(4, H, dtype=torch.float64), torch.randn(4, H, dtype=torch.float64))
    for args in ((x,), (x, hx)):
        output, (h_n, s_n) = module(*args)
        expected, (expected_h, expected_c) = theirs(*args)
        assert output.shape == (T, 2 * H) and h_n.shape == s_n.shape == (4, H)
        assert close(output, expected) and close(h_n, expected_h) and close(s_n, expected_c)


def test_dropout_between_layers_in_training_only():
    torch.manual_seed(2)
    module = lstm1997.LSTM(I, H, num_layers=3, dropout=0.5, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    module.eval()
    no_dropout = lstm1997.LSTM(I, H, num_layers=3, dtype=torch.float64)
    no_dropout.load_state_dict(module.state_dict())
    assert torch.equal(module(x)[0], no_dropout(x)[0])

    # In training, the same dropout calls on the same layer outputs as a manual stack of layers.
    module.train()
    layers = [lstm1997.LSTM(I if k == 0 else H, H, dtype=torch.float64) for k in range(3)]
    for k, layer in enumerate(layers):
        layer.load_state_dict({n.replace(f"_l{k}", "_l0"): p for n, p in module.state_dict().items()
                               if n.endswith(f"_l{k}")})
    torch.manual_seed(3)
    output, (h_n, _) = module(x)
    torch.manual_seed(3)
    manual = x
    for k, layer in enumerate(layers):
        manual, (h, _) = layer(manual)
        assert torch.equal(h[0], h_n[k])
        if k < 2:
            manual = torch.nn.functional.dropout(manual, 0.5, training=True)
    assert torch.equal(output, manual)
    assert not torch.equal(output, no_dropout(x)[0])


def test_dropout_warning_and_validation():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        lstm1997.LSTM(I, H, dropout=0.2)
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match=r"LSTM: dropout: expected a probability in \[0, 1\]"):
            lstm1997.LSTM(I, H, num_layers=2, dropout=bad)


def test_parameters_and_repr_like_nn_lstm():
    kwargs = dict(num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True)
    ours = lstm1997.LSTM(I, H, **kwargs)
    theirs = torch.nn.LSTM(I, H, **kwargs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for (_, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert a.shape == (b.shape[0] * 3 // 4, *b.shape[1:])
    assert repr(ours) == repr(theirs).replace(")", ", truncate=True, activation='tanh')")
    assert [len(w) for w in ours.all_weights] == [len(w) for w in theirs.all_weights]
    ours.flatten_parameters()  # a no-op, so that scripts calling it keep working


def test_dtype_and_device_moves_keep_forward_working():
    module = lstm1997.LSTM(I, H, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I)
    module.double()
    assert all(p.dtype == torch.float64 for p in module.parameters())
    assert module(x.double())[0].dtype == torch.float64
    module.to(torch.float32)
    assert module(x)[0].dtype == torch.float32
    module.weight_hh_l1 = torch.nn.Parameter(torch.zeros(3 * H, H))  # replaced parameters are used
    assert module._flat_weights[module._flat_weights_names.index("weight_hh_l1")] is module.weight_hh_l1


@pytest.mark.parametrize("num_layers,bidirectional,bias,batch_first",
                         [(1, False, True, False), (3, True, False, True), (2, True, True, False)])
def test_conversions_to_and_from_nn_lstm(num_layers, bidirectional, bias, batch_first):
    torch.manual_seed(4)
    kwargs = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    module = lstm1997.LSTM(I, H, **kwargs, dtype=torch.float64)
    theirs = module.to_torch_lstm()
    assert (theirs.num_layers, theirs.bidirectional, theirs.batch_first) == (num_layers, bidirectional, batch_first)
    x = torch.randn(B, T, I, dtype=torch.float64) if batch_first else torch.randn(T, B, I, dtype=torch.float64)
    ours_out, (ours_h, ours_s) = module(x)
    their_out, (their_h, their_c) = theirs(x)
    assert close(ours_out, their_out) and close(ours_h, their_h) and close(ours_s, their_c)
    with _no_warning():  # its forget gates are pinned open: the function is the same
        back = lstm1997.LSTM.from_torch_lstm(theirs)
    assert back.bias  # nn.LSTM needs biases to pin its forget gate open
    assert close(back(x)[0], ours_out)
    random_torch = torch.nn.LSTM(I, H, **kwargs, dtype=torch.float64)
    with pytest.warns(UserWarning, match="forget gates of the LSTM are dropped"):
        converted = lstm1997.LSTM.from_torch_lstm(random_torch, truncate=False)
    their_params = dict(random_torch.named_parameters())
    for name, p in converted.named_parameters():
        assert torch.equal(p, drop_forget_rows(their_params[name]))


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_hx_and_input_errors():
    module = lstm1997.LSTM(I, H, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I)
    good = torch.zeros(4, B, H)
    with pytest.raises(RuntimeError, match=r"hx \(h0\): expected shape \[4, 4, 4\] \(num_layers \* num_directions, batch, hidden_size\), got \[2, 4, 4\]"):
        module(x, (torch.zeros(2, B, H), good))
    with pytest.raises(RuntimeError, match=r"hx \(s0\): expected shape \[4, 4, 4\]"):
        module(x, (good, torch.zeros(4, B + 1, H)))
    with pytest.raises(RuntimeError, match=r"hx \(h0\): expected shape \[4, 4\] .*unbatched"):
        module(x[:, 0], (good, good))
    packed = pack_padded_sequence(x, torch.tensor([6, 5, 3, 1]))
    with pytest.raises(RuntimeError, match=r"hx \(h0\): expected shape \[4, 4, 4\]"):
        module(packed, (torch.zeros(4, 2, H), good))
    with pytest.raises(ValueError, match=r"input: expected a 3-D .* or 2-D"):
        module(torch.zeros(T, B, I, 1))
    with pytest.raises(ValueError, match=r"input: expected a 3-D .* or 2-D"):
        module(torch.zeros(I))
    with pytest.raises(RuntimeError, match="must be sorted in decreasing order"):
        pack_padded_sequence(x, torch.tensor([3, 6, 1, 5]), enforce_sorted=True)
    with pytest.raises(ValueError, match=r"proj_size: expected 0, got 2: projections .* not supported"):
        lstm1997.LSTM(I, H, proj_size=2)
    with pytest.raises(ValueError, match=r"num_layers: expected a positive int, got 0"):
        lstm1997.LSTM(I, H, num_layers=0)


# ---- one layer, against torch.nn.LSTM and the reference loop ----

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
