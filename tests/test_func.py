"""torch.func transforms over lstm1997 (python/lstm1997/_transforms.py): grad, vjp and jacrev
against the same transforms over the plain-PyTorch reference loop (which torch.func differentiates
by itself: an independent reference, truncation included), and vmap against separate calls, one
member at a time. vmap with shared weights (a batch of sequences, per-sample gradients) must run
the layer once for all members, forward and backward, with no fallback warning. Every test runs on
the CPU kernels and on the device-generic implementation."""
import warnings

import pytest
import torch
from torch.func import functional_call, grad, jacrev, stack_module_state, vjp, vmap

from conftest import make_args
from reference import reference_lstm

import lstm1997

pytestmark = pytest.mark.usefixtures("implementation")

f64 = torch.float64
BATCH_SIZES = torch.tensor([3, 3, 2, 2, 1])


@pytest.fixture(autouse=True)
def no_fallback_warnings():
    """The vmap fallback's warning ("There is a performance drop because we have not yet
    implemented the batching rule for ...") fails these tests."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*batching rule.*")
        yield


def layer_loss(fn, options):
    """A loss over every output of a layer function (lstm1997.lstm or the reference)."""
    def loss(args):
        output, h_n, s_n = fn(*args, **options)
        return output.square().sum() + (h_n * torch.arange(h_n.shape[-1], dtype=f64)).sum() \
            + s_n.sum()
    return loss


def reference_options(options):
    return {k: v for k, v in options.items() if k != "cells_per_block" or options.get("gate_feedback")}


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("cells_per_block, gate_feedback", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
def test_grad_equals_the_reference_under_grad(truncate, cells_per_block, gate_feedback, activation):
    args = make_args(6, 3, 4, 4, requires_grad=False, cells_per_block=cells_per_block,
                     gate_feedback=gate_feedback, scale=0.8)
    options = dict(truncate=truncate, activation=activation, gate_feedback=gate_feedback,
                   cells_per_block=cells_per_block)
    ours = grad(layer_loss(lstm1997.lstm, options))(args)
    expected = grad(layer_loss(reference_lstm, reference_options(options)))(args)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("truncate", [True, False])
def test_vjp_and_jacrev_equal_the_reference(truncate):
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(4, 2, 3, 4, requires_grad=False, scale=0.8)

    def ours(x, h0):
        return lstm1997.lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0, truncate=truncate)[0]

    def reference(x, h0):
        return reference_lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0, truncate=truncate)[0]

    cotangent = torch.randn(4, 2, 4, dtype=f64)
    for a, b in zip(vjp(ours, x, h0)[1](cotangent), vjp(reference, x, h0)[1](cotangent)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for a, b in zip(jacrev(ours, argnums=(0, 1))(x, h0), jacrev(reference, argnums=(0, 1))(x, h0)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def count_calls(fn):
    """fn() and how many times each lstm1997 op ran below it."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        result = fn()
    names = [event.name for event in profile.events()]
    return result, {op: names.count(f"lstm1997::{op}")
                    for op in ("_lstm_forward", "_lstm_backward", "_lstm_net_errors",
                               "_lstm_ensemble_forward", "_lstm_ensemble_backward")}


@pytest.mark.parametrize("batched", ["input", "input h0 s0", "h0"])
@pytest.mark.parametrize("in_dim", [0, 1])
def test_vmap_of_a_batch_of_sequences_is_one_call(batched, in_dim):
    E = 5
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(6, 2, 3, 4, requires_grad=False,
                                                  gate_feedback=True, cells_per_block=2)
    members = {name: torch.randn(E, *t.shape, dtype=f64).movedim(0, in_dim)
               for name, t in (("input", x), ("h0", h0), ("s0", s0)) if name in batched}
    dims = [in_dim if name in batched else None for name in ("input", "h0", "s0")]
    args = [members.get(name, t) for name, t in (("input", x), ("h0", h0), ("s0", s0))]

    def layer(x, h0, s0):
        return lstm1997.lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0, gate_feedback=True,
                             cells_per_block=2)

    (output, h_n, s_n), calls = count_calls(lambda: vmap(layer, in_dims=tuple(dims))(*args))
    assert calls["_lstm_forward"] == 1
    for e in range(E):
        member = [a.select(in_dim, e) if d is not None else a for a, d in zip(args, dims)]
        for got, want in zip((output[e], h_n[e], s_n[e]), layer(*member)):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_vmap_of_packed_sequences():
    E = 3
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(5, 3, 2, 4, requires_grad=False)
    data = torch.randn(E, int(BATCH_SIZES.sum()), 2, dtype=f64)

    def layer(data, h0):
        return lstm1997.lstm(data, w_ih, w_hh, b_ih, b_hh, h0, s0, batch_sizes=BATCH_SIZES)

    h0s = torch.randn(E, *h0.shape, dtype=f64)
    (output, h_n, s_n), calls = count_calls(lambda: vmap(layer)(data, h0s))
    assert calls["_lstm_forward"] == 1
    for e in range(E):
        for got, want in zip((output[e], h_n[e], s_n[e]), layer(data[e], h0s[e])):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def module_loss(module):
    def loss(params, x):
        output, (h_n, s_n) = functional_call(module, params, (x,))
        data = output.data if isinstance(output, torch.nn.utils.rnn.PackedSequence) else output
        return data.square().sum() + h_n.sum() + s_n.sum()
    return loss


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("cells_per_block, gate_feedback", [(1, False), (2, True)])
def test_per_sample_gradients_in_one_pass(truncate, cells_per_block, gate_feedback):
    torch.manual_seed(0)
    module = lstm1997.LSTM(3, 4, truncate=truncate, cells_per_block=cells_per_block,
                           gate_feedback=gate_feedback, dtype=f64)
    params = {k: v.detach() for k, v in module.named_parameters()}
    samples = torch.randn(6, 7, 1, 3, dtype=f64)  # 6 samples, each a (T, B=1, I) sequence
    loss = module_loss(module)
    per_sample, calls = count_calls(lambda: vmap(grad(loss), in_dims=(None, 0))(params, samples))
    assert calls == {"_lstm_forward": 1, "_lstm_backward": 0, "_lstm_net_errors": 1,
                     "_lstm_ensemble_forward": 0, "_lstm_ensemble_backward": 0}
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")

    def reference_loss(weights, x):
        output, h_n, s_n = reference_lstm(x, *weights, truncate=truncate,
                                          gate_feedback=gate_feedback,
                                          cells_per_block=cells_per_block)
        return output.square().sum() + h_n.sum() + s_n.sum()

    for i in range(6):
        wanted = grad(reference_loss)(tuple(params[n] for n in names), samples[i])
        for name, want in zip(names, wanted):
            torch.testing.assert_close(per_sample[name][i], want, rtol=1e-10, atol=1e-10)


def test_per_sample_gradients_of_packed_sequences():
    torch.manual_seed(1)
    module = lstm1997.LSTM(2, 3, gate_feedback=True, dtype=f64)
    params = {k: v.detach() for k, v in module.named_parameters()}
    data = torch.randn(4, int(BATCH_SIZES.sum()), 2, dtype=f64)

    def loss(params, data):
        packed = torch.nn.utils.rnn.PackedSequence(data, BATCH_SIZES)
        return module_loss(module)(params, packed)

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, data)
    for i in range(4):
        module.zero_grad()
        loss(dict(module.named_parameters()), data[i]).backward()
        for name, p in module.named_parameters():
            torch.testing.assert_close(per_sample[name][i], p.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("truncate", [True, False])
def test_ensemble_of_independent_nets(truncate):
    """PyTorch's model-ensembling recipe: stacked weights, vmap over them."""
    torch.manual_seed(2)
    nets = [lstm1997.LSTM(2, 4, truncate=truncate, cells_per_block=2, dtype=f64)
            for _ in range(3)]
    params, buffers = stack_module_state(nets)
    x = torch.randn(8, 2, 2, dtype=f64)

    def loss(params, buffers, x):
        output, (h_n, s_n) = functional_call(nets[0], (params, buffers), (x,))
        return output.square().sum() + s_n.sum()

    outputs = vmap(lambda p, b, x: functional_call(nets[0], (p, b), (x,))[0],
                   in_dims=(0, 0, None))(params, buffers, x)
    grads = vmap(grad(loss), in_dims=(0, 0, None))(params, buffers, x)
    for e, net in enumerate(nets):
        output, (h_n, s_n) = net(x)
        torch.testing.assert_close(outputs[e], output, rtol=1e-10, atol=1e-10)
        (output.square().sum() + s_n.sum()).backward()
        for name, p in net.named_parameters():
            torch.testing.assert_close(grads[name][e], p.grad, rtol=1e-10, atol=1e-10)


def stacked_args(E, T, B, I, H, batched, cells_per_block, gate_feedback, bias=True):
    """E members' op arguments, each member's drawn apart (make_args), stacked in front where
    `batched` names the argument ("weights" names the four weights), the first member's
    otherwise; and the in_dims that say so."""
    names = ("input", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "h0", "s0")
    members = [make_args(T, B, I, H, requires_grad=False, seed=e, scale=0.8, bias=bias,
                         cells_per_block=cells_per_block, gate_feedback=gate_feedback)
               for e in range(E)]
    wanted = set(batched.split()) | (set(names[1:5]) if "weights" in batched else set())
    args, dims = [], []
    for i, name in enumerate(names):
        on = name in wanted and members[0][i] is not None
        args.append(torch.stack([m[i] for m in members]) if on else members[0][i])
        dims.append(0 if on else None)
    return args, tuple(dims)  # args a list: a test may replace one


def member_of(args, dims, e):
    return [a if d is None or a is None else a.select(d, e) for a, d in zip(args, dims)]


def each_ensemble_path(monkeypatch, joint):
    """The ensemble ops, or one call per member (the path where a transform differentiates the
    vmapped results): both tested on the same cases."""
    if not joint:
        monkeypatch.setattr(lstm1997._transforms, "_ENSEMBLE_OP", False)
    return joint


@pytest.mark.parametrize("joint", [True, False], ids=["ensemble-op", "per-member"])
@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("cells_per_block, gate_feedback, activation",
                         [(1, False, "tanh"), (2, False, "paper"), (2, True, "tanh"),
                          (3, True, "paper")])
@pytest.mark.parametrize("batched", ["weights", "weights input h0 s0", "weight_hh s0"])
def test_ensemble_gradients_of_every_argument(monkeypatch, joint, truncate, cells_per_block,
                                              gate_feedback, activation, batched):
    """vmap(grad) over E members with weights of their own (some or all), every argument's
    gradient against each member's through the reference loop; through the ensemble ops, one
    forward and one backward call for all members."""
    calls = each_ensemble_path(monkeypatch, joint)
    E, H = 3, 6 if cells_per_block == 3 else 4
    args, dims = stacked_args(E, 5, 2, 3, H, batched, cells_per_block, gate_feedback)
    options = dict(truncate=truncate, activation=activation, cells_per_block=cells_per_block,
                   gate_feedback=gate_feedback)
    loss = layer_loss(lstm1997.lstm, options)
    reference = layer_loss(reference_lstm, reference_options(options))
    (gradients, values), counted = count_calls(
        lambda: vmap(torch.func.grad_and_value(loss), in_dims=(dims,))(tuple(args)))
    if calls:
        assert counted["_lstm_ensemble_forward"] == 1 and counted["_lstm_ensemble_backward"] == 1
    else:
        assert counted["_lstm_forward"] == E
    for e in range(E):
        member = member_of(args, dims, e)
        torch.testing.assert_close(values[e], reference(member), rtol=1e-10, atol=1e-10)
        for got, want in zip(gradients, grad(reference)(member)):
            torch.testing.assert_close(got[e], want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("joint", [True, False], ids=["ensemble-op", "per-member"])
@pytest.mark.parametrize("truncate", [True, False])
def test_ensemble_of_packed_sequences_without_biases(monkeypatch, joint, truncate):
    each_ensemble_path(monkeypatch, joint)
    E = 4
    args, dims = stacked_args(E, 5, 3, 2, 4, "weights", 2, True, bias=False)
    x, w_ih, w_hh, _, _, h0, s0 = args
    data = torch.randn(int(BATCH_SIZES.sum()), 2, dtype=f64)
    options = dict(truncate=truncate, cells_per_block=2, gate_feedback=True)

    def loss(tensors):
        data, w_ih, w_hh, h0, s0 = tensors
        output, h_n, s_n = lstm1997.lstm(data, w_ih, w_hh, None, None, h0, s0,
                                         batch_sizes=BATCH_SIZES, **options)
        return output.square().sum() + h_n.sum() + s_n.square().sum()

    gradients = vmap(grad(loss), in_dims=((None, 0, 0, None, None),))(
        (data, w_ih, w_hh, h0, s0))

    def reference_loss(tensors):
        """Each sequence of the packed batch alone through the reference loop."""
        data, w_ih, w_hh, h0, s0 = tensors
        starts = [0, *BATCH_SIZES.cumsum(0).tolist()]
        sequences = [data[[starts[t] + b for t in range(len(BATCH_SIZES))
                           if BATCH_SIZES[t] > b]] for b in range(int(BATCH_SIZES[0]))]
        total = 0
        for b, sequence in enumerate(sequences):
            output, h_n, s_n = reference_lstm(sequence.unsqueeze(1), w_ih, w_hh, None, None,
                                              h0[b:b + 1], s0[b:b + 1], **options)
            total = total + output.square().sum() + h_n.sum() + s_n.square().sum()
        return total

    for e in range(E):
        wanted = grad(reference_loss)((data, w_ih[e], w_hh[e], h0, s0))
        for got, want in zip(gradients, wanted):
            torch.testing.assert_close(got[e], want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("joint", [True, False], ids=["ensemble-op", "per-member"])
@pytest.mark.parametrize("truncate", [True, False])
def test_ensemble_meta_gradient(monkeypatch, joint, truncate):
    """grad of grad over each member (MAML's meta-gradient, vmapped over an ensemble): the
    inner gradient must stay differentiable."""
    each_ensemble_path(monkeypatch, joint)
    E = 3
    args, dims = stacked_args(E, 4, 2, 2, 4, "weights input", 2, True)
    options = dict(truncate=truncate, cells_per_block=2, gate_feedback=True)

    def meta(layer):
        def loss(w_ih, w_hh, x):
            output, h_n, s_n = layer(x, w_ih, w_hh, None, None, None, None, **options)
            return output.square().sum() + h_n.sum() + s_n.square().sum()

        def outer(w_hh, w_ih, x):
            inner = grad(loss)(w_ih, w_hh, x)
            return loss(w_ih - 0.1 * inner, w_hh, x)
        return grad(outer)

    x, w_ih, w_hh = args[0], args[1], args[2]
    got = vmap(meta(lstm1997.lstm))(w_hh, w_ih, x)
    for e in range(E):
        torch.testing.assert_close(got[e], meta(reference_lstm)(w_hh[e], w_ih[e], x[e]),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("joint", [True, False], ids=["ensemble-op", "per-member"])
@pytest.mark.parametrize("truncate", [True, False])
def test_ensemble_under_autograd_outside_the_vmap(monkeypatch, joint, truncate):
    """Stacked weights that require grad (as stack_module_state makes them): autograd through a
    vmapped forward, and through vmap(grad) (a penalty on each member's gradient, so a double
    backward), against the reference loop member by member."""
    each_ensemble_path(monkeypatch, joint)
    E = 3
    args, dims = stacked_args(E, 5, 2, 2, 4, "weights input", 2, True)
    x, w_ih, w_hh, b_ih, b_hh = args[:5]
    options = dict(truncate=truncate, cells_per_block=2, gate_feedback=True)
    weights = [w.clone().requires_grad_() for w in (w_ih, w_hh, b_ih, b_hh)]

    def loss_of(layer):
        def loss(weights, x):
            output, h_n, s_n = layer(x, *weights, None, None, **options)
            return output.square().sum() + h_n.sum() + s_n.square().sum()
        return loss

    vmap(loss_of(lstm1997.lstm))(tuple(weights), x).sum().backward()
    for e in range(E):
        wanted = grad(loss_of(reference_lstm))(tuple(w[e].detach() for w in weights), x[e])
        for w, want in zip(weights, wanted):
            torch.testing.assert_close(w.grad[e], want, rtol=1e-10, atol=1e-10)

    def penalty_of(layer):
        def penalty(weights, x):
            return sum(g.square().sum() for g in grad(loss_of(layer))(weights, x))
        return penalty

    for w in weights:
        w.grad = None
    gradients = vmap(grad(loss_of(lstm1997.lstm)))(tuple(weights), x)
    sum(g.square().sum() for g in gradients).backward()
    for e in range(E):
        wanted = grad(penalty_of(reference_lstm))(tuple(w[e].detach() for w in weights), x[e])
        for w, want in zip(weights, wanted):
            torch.testing.assert_close(w.grad[e], want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("make", [
    lambda: lstm1997.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=f64),
    lambda: lstm1997.LSTM(3, 6, cells_per_block=3, gate_feedback=True, truncate=False,
                          dtype=f64),
    lambda: lstm1997.LSTMCell(3, 4, dtype=f64)], ids=["stacked-bidirectional", "paper-net", "cell"])
def test_ensemble_of_modules(make):
    """PyTorch's ensembling recipe over every module: each member's gradients equal its own
    backward (the C++ autograd), with the ensemble ops doing the layers' work."""
    torch.manual_seed(4)
    nets = [make() for _ in range(3)]
    params, buffers = stack_module_state(nets)
    cell = isinstance(nets[0], lstm1997.LSTMCell)
    x = torch.randn(2, 3, dtype=f64) if cell else torch.randn(5, 2, 3, dtype=f64)

    def loss_of(output, state):
        if cell:  # (h, s)
            return output.square().sum() + state.sum()
        return output.square().sum() + state[0].sum() + state[1].square().sum()

    def loss(params, buffers, x):
        return loss_of(*functional_call(nets[0], (params, buffers), (x,)))

    grads, counted = count_calls(lambda: vmap(grad(loss), in_dims=(0, 0, None))(
        params, buffers, x))
    layers = 1 if cell else nets[0].num_layers * (2 if nets[0].bidirectional else 1)
    assert counted["_lstm_ensemble_forward"] == layers
    for e, net in enumerate(nets):
        loss_of(*net(x)).backward()
        for name, p in net.named_parameters():
            torch.testing.assert_close(grads[name][e], p.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("packed", [False, True])
def test_bidirectional_module_under_grad_and_vmap(packed):
    """lstm_bidirectional (the module's bidirectional layers) under grad and vmap: per-sample
    gradients against each sample's own backward, with no vmap fallback."""
    torch.manual_seed(5)
    module = lstm1997.LSTM(2, 3, bidirectional=True, num_layers=2, dtype=f64)
    params = {k: v.detach() for k, v in module.named_parameters()}
    if packed:
        data = torch.randn(4, int(BATCH_SIZES.sum()), 2, dtype=f64)
        samples = [torch.nn.utils.rnn.PackedSequence(d, BATCH_SIZES) for d in data]

        def loss(params, data):
            return module_loss(module)(params, torch.nn.utils.rnn.PackedSequence(data,
                                                                                BATCH_SIZES))
    else:
        data = torch.randn(4, 6, 2, 2, dtype=f64)
        samples = list(data)
        loss = module_loss(module)
    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, data)
    for i, sample in enumerate(samples):
        module.zero_grad()
        module_loss(module)(dict(module.named_parameters()), sample).backward()
        for name, p in module.named_parameters():
            torch.testing.assert_close(per_sample[name][i], p.grad, rtol=1e-10, atol=1e-10)


def test_ensemble_of_larger_members_in_one_call():
    """Members beyond the tiny-layer path's sizes: the ensemble op runs them one after the other,
    inside one call."""
    E, H = 3, 40
    args, dims = stacked_args(E, 3, 2, 2, H, "weights", 1, False)
    outputs, counted = count_calls(lambda: vmap(lambda a: lstm1997.lstm(*a)[0],
                                                in_dims=(dims,))(tuple(args)))
    assert counted["_lstm_ensemble_forward"] == 1
    for e in range(E):
        torch.testing.assert_close(outputs[e], reference_lstm(*member_of(args, dims, e))[0],
                                   rtol=1e-10, atol=1e-10)

def test_lstm_cell_under_grad():
    torch.manual_seed(3)
    cell = lstm1997.LSTMCell(3, 4, dtype=f64)
    params = {k: v.detach() for k, v in cell.named_parameters()}
    x = torch.randn(2, 3, dtype=f64)

    def loss(params):
        h, s = functional_call(cell, params, (x,))
        return h.square().sum() + s.sum()

    got = grad(loss)(params)
    loss(dict(cell.named_parameters())).backward()
    for name, p in cell.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-10, atol=1e-10)


def test_batched_batch_sizes_refused():
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(5, 3, 2, 4, requires_grad=False)
    data = torch.randn(int(BATCH_SIZES.sum()), 2, dtype=f64)
    with pytest.raises(ValueError, match="batch_sizes: expected one batch_sizes for every member"):
        vmap(lambda bs: lstm1997.lstm(data, w_ih, w_hh, h0=h0, s0=s0, batch_sizes=bs)[0])(
            BATCH_SIZES.expand(2, 5))


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("cells_per_block, gate_feedback", [(1, False), (2, True)])
def test_second_order_transforms_equal_the_reference(truncate, cells_per_block, gate_feedback):
    """grad of grad (MAML's meta-gradient), hessian (jacfwd of jacrev) and jvp, through the
    layer's ATen composition, against the same transforms over the reference loop."""
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(4, 2, 3, 4, requires_grad=False, scale=0.8,
                                                  cells_per_block=cells_per_block,
                                                  gate_feedback=gate_feedback)
    options = dict(truncate=truncate, gate_feedback=gate_feedback,
                   cells_per_block=cells_per_block)

    def loss_of(layer):
        def loss(w_ih, w_hh, x):
            output, h_n, s_n = layer(x, w_ih, w_hh, b_ih, b_hh, h0, s0, **options)
            return output.square().sum() + h_n.sum() + s_n.square().sum()
        return loss

    def meta_gradient(layer):
        """One inner gradient step on w_ih, then the outer gradient with respect to w_hh."""
        def outer(w_hh):
            inner = grad(loss_of(layer))(w_ih, w_hh, x)
            return loss_of(layer)(w_ih - 0.1 * inner, w_hh, x)
        return grad(outer)(w_hh)

    torch.testing.assert_close(meta_gradient(lstm1997.lstm), meta_gradient(reference_lstm),
                               rtol=1e-10, atol=1e-10)
    small = (w_ih[:, :1].contiguous(),)
    for a, b in zip(torch.func.hessian(lambda w: loss_of(lstm1997.lstm)(w, w_hh, x[..., :1]))(*small),
                    torch.func.hessian(lambda w: loss_of(reference_lstm)(w, w_hh, x[..., :1]))(*small)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    tangent = torch.randn_like(x)
    ours = torch.func.jvp(lambda x: lstm1997.lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0, **options),
                          (x,), (tangent,))
    expected = torch.func.jvp(lambda x: reference_lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0,
                                                       **options), (x,), (tangent,))
    for a, b in zip([*ours[0], *ours[1]], [*expected[0], *expected[1]]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_forward_mode_within_forward_mode_is_refused():
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(3, 2, 1, 3, requires_grad=False)

    def loss(w):
        return lstm1997.lstm(x, w, w_hh, b_ih, b_hh, h0, s0)[0].square().sum()

    with pytest.raises(NotImplementedError, match="forward-mode AD of forward-mode AD"):
        torch.func.jacfwd(torch.func.jacfwd(loss))(w_ih)
    assert torch.func.jacrev(torch.func.jacrev(loss))(w_ih).shape == (*w_ih.shape, *w_ih.shape)


def test_outside_transforms_the_cpp_autograd_runs():
    """The transforms' kernel is only reached while a transform is active: eager calls (and so
    TorchScript and LibTorch) keep the C++ autograd Function."""
    args = make_args(3, 2, 2, 3)
    output, _, _ = lstm1997.lstm(*args)
    assert "CppNode<lstm1997" in output.grad_fn.name()


def test_net_errors_give_the_backward_gradients():
    """_lstm_net_errors is _lstm_backward's first half: its errors give the same gradients."""
    args = make_args(5, 3, 4, 6, requires_grad=False, cells_per_block=3, gate_feedback=True)
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = args
    options = dict(cells_per_block=3, gate_feedback=True)
    output, h_n, s_n, squashed, gates = torch.ops.lstm1997._lstm_forward(*args, **options)
    grads = [torch.randn_like(t) for t in (output, h_n, s_n)]
    for truncate in (True, False):
        saved = (x, w_ih, w_hh, h0, output, squashed, gates)
        full = torch.ops.lstm1997._lstm_backward(*grads, *saved, truncate=truncate, **options)
        errors, grad_h0, grad_s0 = torch.ops.lstm1997._lstm_net_errors(
            *grads, *saved, truncate=truncate, **options)
        assert errors.shape == (5 * 3, w_ih.shape[0])
        torch.testing.assert_close(errors @ w_ih, full[0].reshape(15, 4), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(errors.T @ x.reshape(15, 4), full[1], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(errors.sum(0), full[3], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad_h0, full[4])
        torch.testing.assert_close(grad_s0, full[5])
        torch.library.opcheck(torch.ops.lstm1997._lstm_net_errors.default, (*grads, *saved),
                              dict(truncate=truncate, **options))


@pytest.mark.parametrize("truncate", [True, False])
def test_compiled_vmap_of_an_ensemble_and_of_per_sample_gradients(truncate):
    """torch.compile (fullgraph) of the ensembling recipe's vmap(grad) and of per-sample
    gradients, against each member's and each sample's own eager backward (the C++ autograd)
    and the reference loop."""
    torch.manual_seed(3)
    nets = [lstm1997.LSTM(2, 4, truncate=truncate, cells_per_block=2, gate_feedback=True,
                          dtype=f64) for _ in range(3)]
    params, buffers = stack_module_state(nets)
    x = torch.randn(6, 2, 2, dtype=f64)

    def loss(params, buffers, x):
        output, (h_n, s_n) = functional_call(nets[0], (params, buffers), (x,))
        return output.square().sum() + s_n.sum()

    torch._dynamo.reset()
    grads = torch.compile(vmap(grad(loss), in_dims=(0, 0, None)), fullgraph=True)(
        params, buffers, x)
    for e, net in enumerate(nets):
        output, (h_n, s_n) = net(x)
        (output.square().sum() + s_n.sum()).backward()
        for name, p in net.named_parameters():
            torch.testing.assert_close(grads[name][e], p.grad, rtol=1e-10, atol=1e-10)

    module = nets[0]
    weights = {k: v.detach() for k, v in module.named_parameters()}
    samples = torch.randn(4, 6, 1, 2, dtype=f64)
    per_sample = torch.compile(vmap(grad(module_loss(module)), in_dims=(None, 0)),
                               fullgraph=True)(weights, samples)
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")

    def reference_loss(layer_weights, x):
        output, h_n, s_n = reference_lstm(x, *layer_weights, truncate=truncate,
                                          gate_feedback=True, cells_per_block=2)
        return output.square().sum() + h_n.sum() + s_n.sum()

    for i in range(4):
        wanted = grad(reference_loss)(tuple(weights[n] for n in names), samples[i])
        for name, want in zip(names, wanted):
            torch.testing.assert_close(per_sample[name][i], want, rtol=1e-10, atol=1e-10)
