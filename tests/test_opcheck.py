"""torch.library.opcheck on every op: schema, autograd registration, fake (meta) kernels, and
tracing through AOTAutograd with dynamic shapes."""
import pytest
import torch
from conftest import make_args

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

OPS = torch.ops.lstm1997


@pytest.mark.parametrize("requires_grad", [True, False])
@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
@pytest.mark.parametrize("bias,state", [(True, True), (False, False)])
def test_lstm(requires_grad, truncate, activation, bias, state):
    args = make_args(5, 3, 4, 6, bias=bias, state=state, requires_grad=requires_grad)
    torch.library.opcheck(OPS.lstm.default, args, {"truncate": truncate, "activation": activation})


@pytest.mark.parametrize("activation", ["tanh", "paper"])
@pytest.mark.parametrize("bias,state", [(True, True), (False, False)])
def test_lstm_forward(activation, bias, state):
    args = make_args(5, 3, 4, 6, bias=bias, state=state, requires_grad=False)
    torch.library.opcheck(OPS._lstm_forward.default, args, {"activation": activation})


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
@pytest.mark.parametrize("state", [True, False])
def test_lstm_backward(truncate, activation, state):
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(5, 3, 4, 6, state=state, requires_grad=False)
    output, h_n, s_n, squashed_state, gates = OPS._lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, s0,
                                                               activation=activation)
    upstream = [torch.randn_like(t) for t in (output, h_n, s_n)]
    args = (*upstream, x, w_ih, w_hh, h0, output, squashed_state, gates)
    torch.library.opcheck(OPS._lstm_backward.default, args,
                          {"truncate": truncate, "activation": activation})


def test_internal_ops_refuse_to_be_differentiated():
    args = make_args(3, 2, 3, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="lstm_forward is not differentiable"):
        OPS._lstm_forward(*args)
    forward = OPS._lstm_forward(*(a.detach() for a in args))
    with pytest.raises(RuntimeError, match="_lstm_backward is not differentiable"):
        OPS._lstm_backward(*(torch.ones_like(t).requires_grad_() for t in forward[:3]),
                           args[0], args[1], args[2], args[5], forward[0], forward[3], forward[4])
    grads = [torch.ones_like(t) for t in forward[:3]]
    with pytest.raises(RuntimeError, match="_lstm_net_errors is not differentiable"):
        OPS._lstm_net_errors(*grads, args[0], args[1], args[2], args[5], forward[0], forward[3],
                             forward[4])


@pytest.mark.parametrize("output_mask", [[False, True, True, True], [True, False, False, False],
                                         [False, False, False, True]])
def test_lstm_backward_output_mask(output_mask):
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(5, 3, 4, 6, requires_grad=False)
    output, h_n, s_n, squashed_state, gates = OPS._lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, s0)
    upstream = [torch.randn_like(t) for t in (output, h_n, s_n)]
    args = (*upstream, x, w_ih, w_hh, h0, output, squashed_state, gates)
    full = OPS._lstm_backward(*args)
    masked = OPS._lstm_backward(*args, output_mask=output_mask)
    for wanted, a, b in zip(output_mask, masked[:4], full[:4]):
        assert (a is not None) == wanted
        if wanted:
            assert torch.equal(a, b)
    torch.library.opcheck(OPS._lstm_backward.default, args, {"output_mask": output_mask})


def test_options_are_keyword_only_and_the_internal_ops_say_so():
    args = make_args(3, 2, 3, 4, requires_grad=False)
    with pytest.raises(RuntimeError, match=r"takes 7 positional argument\(s\) but 8"):
        OPS.lstm(*args, False)  # truncate given by position
    for name in ("lstm", "_lstm_forward", "_lstm_backward", "_lstm_net_errors",
                 "lstm_online_traces", "lstm_online_grads", "lstm_online_step_",
                 "lstm_bidirectional"):
        schema = getattr(OPS, name).default._schema
        options = [a.name for a in schema.arguments if a.kwarg_only]
        assert "activation" in options, (name, options)
        assert all(not a.kwarg_only for a in schema.arguments if a.type.kind() == "TensorType")
    assert not hasattr(OPS, "lstm_forward") and not hasattr(OPS, "lstm_backward")
