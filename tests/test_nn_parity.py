"""The public behaviour of torch.nn.LSTM and torch.nn.LSTMCell, as PyTorch's own tests
(test/test_nn.py, test/test_modules.py, common_modules.py) and client programs rely on it, checked on
lstm1997.LSTM / LSTMCell. Every test runs on torch.nn's module too, as the control: a test that
passes there and fails here is a difference from torch.nn.

What differs on purpose (README, "Differences from torch.nn.LSTM"): three gate blocks instead of
four; T = 0 gives an empty output instead of an error; proj_size is refused.
"""
import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import lstm1997

IMPLEMENTATIONS = {"torch.nn": (nn.LSTM, nn.LSTMCell), "lstm1997": (lstm1997.LSTM, lstm1997.LSTMCell)}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request):
    return request.param


def make_lstm(impl, *args, **kwargs):
    return IMPLEMENTATIONS[impl][0](*args, **kwargs)


def make_cell(impl, *args, **kwargs):
    return IMPLEMENTATIONS[impl][1](*args, **kwargs)


def gates(impl):
    return 4 if impl == "torch.nn" else 3


# Shapes ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_output_and_state_shapes(impl, num_layers, bidirectional, batch_first):
    T, B, I, H = 5, 3, 4, 6
    D = 2 if bidirectional else 1
    m = make_lstm(impl, I, H, num_layers, batch_first=batch_first, bidirectional=bidirectional)
    x = torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)
    output, (h, c) = m(x)
    assert output.shape == ((B, T, D * H) if batch_first else (T, B, D * H))
    assert h.shape == c.shape == (num_layers * D, B, H)
    assert m.weight_ih_l0.shape == (gates(impl) * H, I)
    if num_layers == 2:
        assert m.weight_ih_l1.shape == (gates(impl) * H, D * H)
    # unbatched: (T, I) whatever batch_first says
    output, (h, c) = m(x[0] if batch_first else x[:, 0])
    assert output.shape == (T, D * H) and h.shape == c.shape == (num_layers * D, H)
    # the state given back continues the sequence
    output2, _ = m(x, m(x)[1])
    assert output2.shape == m(x)[0].shape


def test_unbatched_equals_batch_of_one(impl):
    torch.manual_seed(0)
    m = make_lstm(impl, 3, 4, 2, bidirectional=True)
    x = torch.randn(6, 3)
    hx = (torch.randn(4, 4), torch.randn(4, 4))
    out, (h, c) = m(x, hx)
    out1, (h1, c1) = m(x.unsqueeze(1), (hx[0].unsqueeze(1), hx[1].unsqueeze(1)))
    torch.testing.assert_close(out, out1.squeeze(1))
    torch.testing.assert_close(h, h1.squeeze(1))
    torch.testing.assert_close(c, c1.squeeze(1))


def test_cell_shapes_and_unbatched(impl):
    cell = make_cell(impl, 3, 5)
    h, c = cell(torch.randn(2, 3))
    assert h.shape == c.shape == (2, 5)
    h, c = cell(torch.randn(3), (torch.zeros(5), torch.zeros(5)))
    assert h.shape == c.shape == (5,)
    assert cell.weight_hh.shape == (gates(impl) * 5, 5)


def test_zero_batch(impl):
    m = make_lstm(impl, 3, 4)
    output, (h, c) = m(torch.randn(5, 0, 3))
    assert output.shape == (5, 0, 4) and h.shape == c.shape == (1, 0, 4)


# Packed sequences --------------------------------------------------------------------------------

@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_equals_each_sequence_alone(impl, enforce_sorted, bidirectional):
    torch.manual_seed(0)
    m = make_lstm(impl, 3, 4, 2, bidirectional=bidirectional)
    lengths = [5, 3, 2] if enforce_sorted else [2, 5, 3]
    sequences = [torch.randn(n, 3) for n in lengths]
    packed = pack_sequence(sequences, enforce_sorted=enforce_sorted)
    output, (h, c) = m(packed)
    padded, out_lengths = pad_packed_sequence(output)
    assert out_lengths.tolist() == lengths
    for b, sequence in enumerate(sequences):
        alone, (h_b, c_b) = m(sequence)
        torch.testing.assert_close(padded[:lengths[b], b], alone)
        torch.testing.assert_close(h[:, b], h_b)
        torch.testing.assert_close(c[:, b], c_b)


# Dropout, modes ----------------------------------------------------------------------------------

def test_dropout_only_between_layers_and_only_in_training(impl):
    torch.manual_seed(0)
    m = make_lstm(impl, 3, 8, 2, dropout=0.5)
    x = torch.randn(4, 2, 3)
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0])
    m.train()
    assert not torch.equal(m(x)[0], m(x)[0])
    single = make_lstm(impl, 3, 8, 1)
    single.train()
    torch.testing.assert_close(single(x)[0], single(x)[0])


# Parameters: state_dict, conversions, copies -----------------------------------------------------

def test_state_dict_round_trip(impl):
    a, b = make_lstm(impl, 3, 4, 2), make_lstm(impl, 3, 4, 2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(a(x)[0], b(x)[0])
    assert list(a.state_dict()) == [name for name, _ in a.named_parameters()]


def test_to_double_and_back(impl):
    m = make_lstm(impl, 3, 4).double()
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert m(torch.randn(5, 2, 3, dtype=torch.float64))[0].dtype == torch.float64
    m = m.to(torch.float32)
    assert m(torch.randn(5, 2, 3))[0].dtype == torch.float32


def test_deepcopy_and_pickle(impl):
    m = make_lstm(impl, 3, 4, 2, bidirectional=True)
    x = torch.randn(5, 2, 3)
    expected = m(x)[0]
    torch.testing.assert_close(copy.deepcopy(m)(x)[0], expected)
    torch.testing.assert_close(pickle.loads(pickle.dumps(m))(x)[0], expected)
    buffer = io.BytesIO()
    torch.save(m, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer, weights_only=False)(x)[0], expected)


def test_weight_norm(impl):
    m = nn.utils.parametrizations.weight_norm(make_lstm(impl, 3, 4), name="weight_hh_l0")
    x = torch.randn(5, 2, 3)
    m(x)[0].sum().backward()
    assert m.parametrizations.weight_hh_l0.original0.grad is not None


def test_weight_tying(impl):
    a, b = make_lstm(impl, 3, 4), make_lstm(impl, 3, 4)
    b.weight_hh_l0 = a.weight_hh_l0
    x = torch.randn(5, 2, 3)
    (a(x)[0].sum() + b(x)[0].sum()).backward()
    assert b.weight_hh_l0 is a.weight_hh_l0 and a.weight_hh_l0.grad is not None
    with torch.no_grad():
        a.weight_hh_l0.add_(1.0)
    b.load_state_dict(b.state_dict())
    torch.testing.assert_close(b(x)[0], b(x)[0])


def test_deleted_weight_set_before_each_forward(impl):
    """The weight-drop pattern (awd-lstm-lm, test_partial_flat_weights): the Parameter is deleted,
    a raw copy registered, and the weight set as a plain tensor before every forward."""
    m = make_lstm(impl, 3, 4)
    raw = m.weight_hh_l0
    del m._parameters["weight_hh_l0"]
    m.register_parameter("weight_hh_l0_raw", nn.Parameter(raw.data.clone()))
    m = m.double()
    assert not hasattr(m, "weight_hh_l0")
    m.weight_hh_l0 = nn.functional.dropout(m.weight_hh_l0_raw, 0.5, training=True)
    output, _ = m(torch.randn(5, 2, 3, dtype=torch.float64))
    output.sum().backward()
    assert m.weight_hh_l0_raw.grad is not None
    m.to(torch.float32)


# Bad arguments: the same exception types as torch.nn ---------------------------------------------

@pytest.mark.parametrize("kwargs,error", [
    ({"input_size": 3.0}, TypeError),
    ({"hidden_size": 4.0}, TypeError),
    ({"num_layers": 2.0}, TypeError),
    ({"hidden_size": 0}, ValueError),
    ({"num_layers": 0}, ValueError),
    ({"dropout": 2}, ValueError),
    ({"bias": "False"}, TypeError),
    ({"batch_first": "False"}, TypeError),
])
def test_constructor_errors(impl, kwargs, error):
    arguments = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(error):
        make_lstm(impl, **arguments)


def test_cell_constructor_errors(impl):
    with pytest.raises(TypeError):
        make_cell(impl, 3, 4.0)


def test_forward_errors(impl):
    m = make_lstm(impl, 3, 4)
    with pytest.raises(ValueError):  # dtype of input against the weights'
        m(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size. "
                                           r"Expected 3, got 7"):
        m(torch.randn(5, 2, 7))
    with pytest.raises(ValueError):
        m(torch.randn(5, 2, 3, 1))
    with pytest.raises(RuntimeError):
        m(torch.randn(5, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))


def test_cell_forward_errors(impl):
    cell = make_cell(impl, 3, 4)
    with pytest.raises(ValueError):
        cell(torch.randn(1, 2, 3))
    for hx_dims in (3, 4):
        shape = (1,) * (hx_dims - 2) + (2, 4)
        with pytest.raises(ValueError):
            cell(torch.randn(2, 3), (torch.zeros(shape), torch.zeros(shape)))
    with pytest.raises(RuntimeError, match="input_size"):
        cell(torch.randn(2, 5))
    with pytest.raises(RuntimeError):  # dtype of input against the weights'
        cell(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError):
        cell(torch.randn(2, 3), (torch.zeros(3, 4), torch.zeros(3, 4)))


# Compilers and autocast --------------------------------------------------------------------------

class PackedWrapper(nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, packed: torch.nn.utils.rnn.PackedSequence) -> torch.Tensor:
        output, (h, c) = self.lstm(packed)
        return h[-1]


def test_torchscript_packed_through_forward(impl):
    torch.manual_seed(0)
    wrapper = PackedWrapper(make_lstm(impl, 3, 4))
    scripted = torch.jit.script(wrapper)
    packed = pack_sequence([torch.randn(n, 3) for n in (4, 2)])
    torch.testing.assert_close(scripted(packed), wrapper(packed))


@pytest.mark.parametrize("fullgraph", [False, True])
def test_torch_compile_packed(impl, fullgraph):
    if impl == "torch.nn" and fullgraph:
        pytest.skip("torch.nn.LSTM itself breaks the graph on a PackedSequence (batch_sizes[0])")
    torch.manual_seed(0)
    torch._dynamo.reset()
    m = make_lstm(impl, 3, 4)
    packed = pack_sequence([torch.randn(n, 3) for n in (4, 2)])
    compiled = torch.compile(m, backend="aot_eager", fullgraph=fullgraph)
    output, (h, c) = compiled(packed)
    expected, (h_expected, _) = m(packed)
    torch.testing.assert_close(output.data, expected.data)
    torch.testing.assert_close(h, h_expected)


def test_autocast_cpu_bfloat16(impl):
    m = make_lstm(impl, 3, 4)
    x = torch.randn(5, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            output, (h, c) = m(x)
        except RuntimeError as error:
            if impl == "torch.nn" and "primitive descriptor" in str(error):
                pytest.skip("this CPU's oneDNN has no bfloat16 LSTM for torch.nn.LSTM")
            raise
    assert output.dtype == h.dtype == c.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), m(x)[0], rtol=0.05, atol=0.05)
    output.float().sum().backward()
    assert m.weight_ih_l0.grad.dtype == torch.float32


def test_cell_autocast_cpu_bfloat16():
    cell = lstm1997.LSTMCell(3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, s = cell(torch.randn(2, 3))
    assert h.dtype == s.dtype == torch.bfloat16


# lstm1997's own ------------------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_conversions_keep_the_mode(training):
    """An eval-mode module converts to an eval-mode module (with dropout, a training-mode copy
    would compute something else), and a training-mode one to a training-mode one."""
    lstm = lstm1997.LSTM(3, 4, 2, dropout=0.5).train(training)
    torch_lstm = lstm.to_torch_lstm()
    assert torch_lstm.training == training
    assert lstm1997.LSTM.from_torch_lstm(torch_lstm).training == training
    cell = lstm1997.LSTMCell(3, 4).train(training)
    assert cell.to_torch_lstm_cell().training == training
    assert lstm1997.LSTMCell.from_torch_lstm_cell(cell.to_torch_lstm_cell()).training == training
    if not training:
        x = torch.randn(5, 2, 3)
        torch.testing.assert_close(torch_lstm(x)[0], lstm(x)[0], rtol=1e-5, atol=1e-6)


def test_forward_packed_is_an_alias_in_torchscript():
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = lstm1997.LSTM(3, 4)

        def forward(self, packed: torch.nn.utils.rnn.PackedSequence) -> torch.Tensor:
            return self.rnn.forward_packed(packed)[1][0] - self.rnn(packed)[1][0]

    packed = pack_sequence([torch.randn(n, 3) for n in (4, 2)])
    assert torch.jit.script(Tagger())(packed).abs().max() == 0


def test_set_gate_biases_sets_the_net_gate_biases():
    lstm = lstm1997.LSTM(3, 6, 2, bidirectional=True, cells_per_block=2)
    assert lstm1997.set_gate_biases(lstm, input_gate=-3.0, output_gate=[-1, -2, -3]) is lstm
    K, H = 3, 6
    for name, parameter in lstm.named_parameters():
        if name.startswith("bias_ih"):
            other = getattr(lstm, name.replace("bias_ih", "bias_hh"))
            net = (parameter + other).detach()
            assert torch.equal(net[:K], torch.full((K,), -3.0))
            assert torch.equal(net[K + H:], torch.tensor([-1.0, -2.0, -3.0]))
    x = torch.randn(50, 2, 3)
    # with the input gates mostly shut the state grows more slowly than at the default init
    lstm1997.set_gate_biases(lstm, input_gate=-6.0)
    s_shut = lstm(x)[1][1].abs().max()
    default = lstm1997.LSTM(3, 6, 2, bidirectional=True, cells_per_block=2)
    default.load_state_dict({k: v for k, v in lstm.state_dict().items()})
    with torch.no_grad():
        for name, parameter in default.named_parameters():
            if name.startswith("bias"):
                parameter[:K].zero_()
    assert s_shut < default(x)[1][1].abs().max()
    with pytest.raises(ValueError, match="one per block"):
        lstm1997.set_gate_biases(lstm, input_gate=[1.0, 2.0])
    with pytest.raises(ValueError, match="with biases"):
        lstm1997.set_gate_biases(lstm1997.LSTM(3, 4, bias=False), input_gate=-1.0)
    with pytest.raises(TypeError, match="expected an lstm1997"):
        lstm1997.set_gate_biases(nn.LSTM(3, 4), input_gate=-1.0)
    online = lstm1997.set_gate_biases(lstm1997.OnlineLSTM(3, 4), input_gate=-2.0)
    assert torch.equal((online.bias_ih_l0 + online.bias_hh_l0)[:4].detach(), torch.full((4,), -2.0))
