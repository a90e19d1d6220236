"""The device-generic implementation (csrc/generic): ATen ops only, registered for every backend
without kernels of its own (CUDA, MPS, XPU, HIP, PrivateUse1, ...); LSTM1997_GENERIC=1 makes the
CPU run it too. The core test files run all their tests on both implementations (conftest.py's
`implementation` fixture, against the plain-PyTorch references). Here: the two implementations
agree to float64 round-off on every configuration; the generic kernels are what other devices
reach, and what runs when forced; they run on meta tensors (so they make no tensor on the wrong
device and read no device value on the host); and, on a machine with CUDA, the layer on the GPU
against the CPU."""
import itertools
import os

import pytest
import torch

from conftest import CUDA, make_args

import lstm1997

OPS = ("lstm", "_lstm_forward", "_lstm_backward", "_lstm_net_errors")
BATCH_SIZES = torch.tensor([3, 3, 2, 2, 1])  # packed: 5 steps, 3 sequences of lengths 5, 4, 2


def use_generic(monkeypatch, generic):
    monkeypatch.setenv("LSTM1997_GENERIC", "1" if generic else "0")


def layer_call(monkeypatch, generic, args, weights, **options):
    """Outputs of lstm1997::lstm and the gradients of a fixed loss on them, on one implementation."""
    use_generic(monkeypatch, generic)
    args = [None if a is None else a.detach().clone().requires_grad_() for a in args]
    outputs = torch.ops.lstm1997.lstm(*args, **options)
    loss = sum((o * w).sum() for o, w in zip(outputs, weights))
    grads = torch.autograd.grad(loss, [a for a in args if a is not None])
    return [*outputs, *grads]


def packed_args(args, batch_sizes):
    """The same call with packed input: the rows of make_args's input that batch_sizes keeps."""
    rows = torch.cat([args[0][t, :n] for t, n in enumerate(batch_sizes.tolist())])
    return [rows.detach(), *args[1:]]


@pytest.mark.parametrize(
    "cells_per_block, gate_feedback, truncate, activation, packed, given",
    list(itertools.product([1, 2, 3], [False, True], [True, False], ["tanh", "paper"],
                           [False, True], [True, False])))
def test_generic_equals_cpu_kernels(monkeypatch, cells_per_block, gate_feedback, truncate,
                                    activation, packed, given):
    args = list(make_args(5, 3, 4, 6, bias=given, state=given or packed, requires_grad=False,
                          cells_per_block=cells_per_block, gate_feedback=gate_feedback, seed=3))
    options = dict(truncate=truncate, activation=activation, cells_per_block=cells_per_block,
                   gate_feedback=gate_feedback)
    if packed:
        args = packed_args(args, BATCH_SIZES)
        options["batch_sizes"] = BATCH_SIZES
    use_generic(monkeypatch, False)
    shapes = [o.shape for o in torch.ops.lstm1997.lstm(*args, **options)]
    generator = torch.Generator().manual_seed(1)
    weights = [torch.randn(s, dtype=torch.float64, generator=generator) for s in shapes]
    kernels = layer_call(monkeypatch, False, args, weights, **options)
    generic = layer_call(monkeypatch, True, args, weights, **options)
    for a, b in zip(kernels, generic):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cells_per_block, gate_feedback", [(1, False), (4, True)])
def test_inference_over_several_chunks(monkeypatch, cells_per_block, gate_feedback):
    """Without autograd the generic forward projects the input chunk by chunk (about 2^20 gate
    values at once: 170 steps here) and keeps nothing per step."""
    args = make_args(400, 64, 3, 32, requires_grad=False, cells_per_block=cells_per_block,
                     gate_feedback=gate_feedback)
    options = dict(cells_per_block=cells_per_block, gate_feedback=gate_feedback)
    use_generic(monkeypatch, False)
    kernels = torch.ops.lstm1997.lstm(*args, **options)
    use_generic(monkeypatch, True)
    generic = torch.ops.lstm1997.lstm(*args, **options)
    saving = torch.ops.lstm1997._lstm_forward(*args, **options)[:3]
    for a, b, c in zip(kernels, generic, saving):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(c, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("op", OPS)
def test_kernel_registered_for_every_other_backend(op):
    table = dict(line.split(": ", 1) for line in
                 torch._C._dispatch_dump_table(f"lstm1997::{op}").splitlines() if ": " in line)
    for backend in ("CUDA", "MPS", "XPU", "HIP", "PrivateUse1"):
        assert "generic/register.cpp" in table[backend], (backend, table[backend])
    assert "cpu/register.cpp" in table["CPU"]
    assert "meta.cpp" in table["Meta"]


def profiled_ops(monkeypatch, generic, truncate):
    use_generic(monkeypatch, generic)
    args = make_args(6, 2, 3, 4, cells_per_block=2)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        output, h_n, s_n = torch.ops.lstm1997.lstm(*args, truncate=truncate, cells_per_block=2)
        (output.sum() + h_n.sum() + s_n.sum()).backward()
    return {event.name for event in profile.events()}


@pytest.mark.parametrize("truncate", [True, False])
def test_the_switch_runs_the_generic_kernels(monkeypatch, truncate):
    """The CPU kernels compute the cell in their own loops; the generic kernels call ATen's
    pointwise ops, and the truncated backward ATen's cumulative sum."""
    generic = profiled_ops(monkeypatch, True, truncate)
    kernels = profiled_ops(monkeypatch, False, truncate)
    assert {"aten::sigmoid", "aten::tanh"} <= generic
    assert ("aten::cumsum" in generic) == truncate
    assert not {"aten::sigmoid", "aten::tanh", "aten::cumsum"} & kernels
    for op in ("_lstm_forward", "_lstm_backward"):
        assert f"lstm1997::{op}" in generic and f"lstm1997::{op}" in kernels


def on_backend_key(op, key, *args, **kwargs):
    """Calls an op's kernel for backend `key` directly (below autograd, whatever the tensors'
    device): with meta tensors, the generic kernel that key's tensors reach runs on meta."""
    keys = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))
    return getattr(torch.ops.lstm1997, op).default.redispatch(keys, *args, **kwargs)


@pytest.mark.parametrize("key", ["CUDA", "PrivateUse1"])
@pytest.mark.parametrize("cells_per_block, gate_feedback, packed",
                         [(1, False, False), (1, True, True), (2, True, False), (3, False, True)])
@pytest.mark.parametrize("truncate", [True, False])
def test_generic_kernels_run_on_meta(key, cells_per_block, gate_feedback, packed, truncate):
    """A tensor made on the wrong device would meet a meta tensor in some op and fail; a read of a
    device value on the host (.item(), a data pointer) has nothing to read on meta. The shapes and
    dtypes must equal those of the CPU kernels' results."""
    args = list(make_args(5, 3, 4, 6, requires_grad=False, cells_per_block=cells_per_block,
                          gate_feedback=gate_feedback))
    options = dict(activation="paper", cells_per_block=cells_per_block,
                   gate_feedback=gate_feedback)
    if packed:
        args = packed_args(args, BATCH_SIZES)
        options["batch_sizes"] = BATCH_SIZES  # stays on the CPU, as in a PackedSequence
    meta_args = [a.to("meta") for a in args]
    real = torch.ops.lstm1997._lstm_forward(*args, **options)
    meta = on_backend_key("_lstm_forward", key, *meta_args, **options)
    inference = on_backend_key("lstm", key, *meta_args, truncate=truncate, **options)
    for r, m in zip(real, meta):
        assert (m.device.type, m.shape, m.dtype) == ("meta", r.shape, r.dtype)
    for r, m in zip(real, inference):
        assert (m.device.type, m.shape, m.dtype) == ("meta", r.shape, r.dtype)

    grads = [torch.ones_like(t) for t in real[:3]]
    backward_args = (args[0], args[1], args[2], args[5], real[0], real[3], real[4])
    backward_options = dict(truncate=truncate, **options)
    real_grads = torch.ops.lstm1997._lstm_backward(*grads, *backward_args, **backward_options)
    meta_grads = on_backend_key("_lstm_backward", key, *[g.to("meta") for g in grads],
                                *[a.to("meta") for a in backward_args], **backward_options)
    for r, m in zip(real_grads, meta_grads):
        assert (m.device.type, m.shape, m.dtype) == ("meta", r.shape, r.dtype)
    real_errors = torch.ops.lstm1997._lstm_net_errors(*grads, *backward_args, **backward_options)
    meta_errors = on_backend_key("_lstm_net_errors", key, *[g.to("meta") for g in grads],
                                 *[a.to("meta") for a in backward_args], **backward_options)
    for r, m in zip(real_errors, meta_errors):
        assert (m.device.type, m.shape, m.dtype) == ("meta", r.shape, r.dtype)


# On a CUDA machine: the layer on the GPU (the generic kernels) against the CPU kernels.

def cuda_and_cpu(module_type, *a, **kw):
    torch.manual_seed(0)
    cpu = module_type(*a, dtype=torch.float64, **kw)
    gpu = module_type(*a, dtype=torch.float64, **kw)
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.cuda()


def assert_same_on_both(cpu_module, gpu_module, x, **forward_kw):
    out_cpu, (h_cpu, s_cpu) = cpu_module(x, **forward_kw)
    out_gpu, (h_gpu, s_gpu) = gpu_module(x.cuda(), **forward_kw)
    (out_cpu.square().sum() + h_cpu.sum() + s_cpu.sum()).backward()
    (out_gpu.square().sum() + h_gpu.sum() + s_gpu.sum()).backward()
    assert out_gpu.device.type == "cuda"
    for a, b in zip([out_cpu, h_cpu, s_cpu], [out_gpu, h_gpu, s_gpu]):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-10, atol=1e-10)
    for (name, a), b in zip(cpu_module.named_parameters(), gpu_module.parameters()):
        assert b.grad.device.type == "cuda", name
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-10, atol=1e-10)


@CUDA
@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("cells_per_block, gate_feedback", [(1, False), (2, True), (3, False)])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
def test_cuda_module_equals_cpu(truncate, cells_per_block, gate_feedback, activation):
    cpu, gpu = cuda_and_cpu(lstm1997.LSTM, 4, 6, num_layers=2, bidirectional=True,
                            truncate=truncate, cells_per_block=cells_per_block,
                            gate_feedback=gate_feedback, activation=activation)
    assert_same_on_both(cpu, gpu, torch.randn(9, 3, 4, dtype=torch.float64))


@CUDA
@pytest.mark.parametrize("truncate", [True, False])
def test_cuda_packed_sequences(truncate):
    cpu, gpu = cuda_and_cpu(lstm1997.LSTM, 3, 5, truncate=truncate, gate_feedback=True)
    sequences = [torch.randn(n, 3, dtype=torch.float64) for n in (4, 7, 2)]
    packed = torch.nn.utils.rnn.pack_sequence(sequences, enforce_sorted=False)
    out_cpu, (h_cpu, s_cpu) = cpu(packed)
    out_gpu, (h_gpu, s_gpu) = gpu(packed.to("cuda"))
    torch.testing.assert_close(out_gpu.data.cpu(), out_cpu.data, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h_gpu.cpu(), h_cpu, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s_gpu.cpu(), s_cpu, rtol=1e-10, atol=1e-10)


@CUDA
def test_cuda_cell_and_online():
    cpu, gpu = cuda_and_cpu(lstm1997.LSTMCell, 3, 4)
    x = torch.randn(2, 3, dtype=torch.float64)
    h_cpu, s_cpu = cpu(x)
    h_gpu, s_gpu = gpu(x.cuda())
    torch.testing.assert_close(h_gpu.cpu(), h_cpu, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s_gpu.cpu(), s_cpu, rtol=1e-10, atol=1e-10)

    cpu, gpu = cuda_and_cpu(lstm1997.OnlineLSTM, 3, 4, cells_per_block=2, gate_feedback=True)
    for step in torch.randn(5, 2, 3, dtype=torch.float64):
        for module, device in ((cpu, "cpu"), (gpu, "cuda")):
            output = module(step.to(device))
            (grad,) = torch.autograd.grad(output.square().sum(), output)
            module.backward(grad)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-10, atol=1e-10)


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_low_precision(dtype):
    """Half types compute in float32 and carry the cell state in float32: close to float64."""
    cpu, gpu = cuda_and_cpu(lstm1997.LSTM, 4, 8)
    gpu = gpu.to(dtype)
    x = torch.randn(20, 3, 4, dtype=torch.float64)
    out_cpu, _ = cpu(x)
    out_gpu, (h_gpu, s_gpu) = gpu(x.to("cuda", dtype))
    assert out_gpu.dtype == h_gpu.dtype == s_gpu.dtype == dtype
    tolerance = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out_gpu.double().cpu(), out_cpu, rtol=tolerance, atol=tolerance)
    out_gpu.float().sum().backward()
    assert all(p.grad.dtype == dtype and torch.isfinite(p.grad).all() for p in gpu.parameters())


@CUDA
def test_cuda_mixed_devices_refused():
    args = list(make_args(3, 2, 4, 5, device="cuda", requires_grad=False))
    args[2] = args[2].cpu()
    with pytest.raises(RuntimeError, match=r"weight_hh: expected device cuda:0 \(the device of input\)"):
        torch.ops.lstm1997.lstm(*args)
    args[2] = args[2].cuda()
    with pytest.raises(RuntimeError, match="batch_sizes: expected a 1-D int64 CPU tensor"):
        torch.ops.lstm1997.lstm(args[0].reshape(6, 4), *args[1:],
                                batch_sizes=torch.tensor([2, 2, 2], device="cuda"))


@CUDA
@pytest.mark.parametrize("truncate", [True, False])
def test_cuda_gradcheck(truncate):
    """Exact mode: autograd's numerical check on the GPU; truncated mode: the gradient equals the
    CPU kernels' (its numerical derivative is the exact one, which it is not meant to be)."""
    args = make_args(4, 2, 3, 4, device="cuda", cells_per_block=2, gate_feedback=True)
    if truncate:
        cpu_args = [a.detach().cpu().requires_grad_() for a in args]
        for a_args, device in ((args, "cuda"), (cpu_args, "cpu")):
            out, h, s = torch.ops.lstm1997.lstm(*a_args, truncate=True, cells_per_block=2,
                                                gate_feedback=True)
            (out.square().sum() + h.sum() + s.sum()).backward()
        for a, b in zip(args, cpu_args):
            torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=1e-10, atol=1e-10)
    else:
        assert torch.autograd.gradcheck(
            lambda *a: torch.ops.lstm1997.lstm(*a, truncate=False, cells_per_block=2,
                                               gate_feedback=True), args)


@CUDA
def test_cuda_compile_script_and_func():
    """torch.compile, TorchScript and torch.func on the GPU give what eager gives."""
    cpu, gpu = cuda_and_cpu(lstm1997.LSTM, 3, 5, num_layers=2)
    x = torch.randn(6, 2, 3, dtype=torch.float64, device="cuda")
    expected, _ = gpu(x)
    compiled, _ = torch.compile(gpu, fullgraph=True)(x)
    torch.testing.assert_close(compiled, expected, rtol=1e-10, atol=1e-10)
    from conftest import Holder
    scripted, _ = torch.jit.script(Holder(gpu))(x)
    torch.testing.assert_close(scripted, expected, rtol=1e-10, atol=1e-10)

    params = dict(gpu.named_parameters())
    grads = torch.func.grad(
        lambda p: torch.func.functional_call(gpu, p, (x,))[0].square().sum())(params)
    gpu.zero_grad()
    expected.square().sum().backward()
    for name, p in params.items():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-10, atol=1e-10)

    members = torch.randn(3, 6, 2, 3, dtype=torch.float64, device="cuda")
    stacked = torch.func.vmap(lambda m: torch.func.functional_call(gpu, params, (m,))[0])(members)
    for m, out in zip(members, stacked):
        torch.testing.assert_close(out, gpu(m)[0], rtol=1e-10, atol=1e-10)
