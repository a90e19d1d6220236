"""ONNX export (lstm1997.onnx) through both of PyTorch's exporters, run in onnxruntime and compared
with the eager module at the traced sequence length and batch size and at others (the exported
graph's axes are dynamic)."""
import warnings

import numpy as np
import pytest
import torch

import lstm1997

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import lstm1997.onnx  # noqa: E402  (registers the TorchScript exporter's translation)

I, H = 3, 6
TRACED = (7, 2)          # (seq_len, batch) the model is exported with
OTHERS = [(11, 4), (1, 1)]


def make_input(T, B, batch_first=False, dtype=torch.float32):
    return torch.randn(B, T, I, dtype=dtype) if batch_first else torch.randn(T, B, I, dtype=dtype)


def make_state(module, B, dtype=torch.float32):
    stacked = module.num_layers * (2 if module.bidirectional else 1)
    return (torch.randn(stacked, B, module.recurrent_size, dtype=dtype),
            torch.randn(stacked, B, module.hidden_size, dtype=dtype))


def export(module, args, path, dynamo, batch_first=False):
    """Exports with the sequence and batch axes dynamic, as README shows."""
    time_axis, batch_axis = (1, 0) if batch_first else (0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            T, B = torch.export.Dim("T"), torch.export.Dim("B")
            shapes = [{time_axis: T, batch_axis: B}]
            if len(args) > 1:
                shapes.append(({1: B}, {1: B}))
            torch.onnx.export(module, args, path, dynamo=True,
                              custom_translation_table=lstm1997.onnx.translation_table,
                              dynamic_shapes=tuple(shapes))
        else:
            names = ["input"] + (["h0", "s0"] if len(args) > 1 else [])
            axes = {"input": {time_axis: "T", batch_axis: "B"}, "output": {time_axis: "T", batch_axis: "B"},
                    "h_n": {1: "B"}, "s_n": {1: "B"}, "h0": {1: "B"}, "s0": {1: "B"}}
            torch.onnx.export(module, args, path, dynamo=False, input_names=names,
                              output_names=["output", "h_n", "s_n"],
                              dynamic_axes={k: v for k, v in axes.items()
                                            if k in names or k in ("output", "h_n", "s_n")})
    return onnx.load(str(path))


def run_onnx(path, args):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    flat = [args[0]] + (list(args[1]) if len(args) > 1 else [])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), flat)}
    assert len(feeds) == len(flat)
    return session.run(None, feeds)


def assert_matches_eager(module, path, args, tolerance):
    with torch.no_grad():
        output, (h_n, s_n) = module(*args)
    got = run_onnx(path, args)
    for name, a, b in zip(("output", "h_n", "s_n"), got, (output, h_n, s_n)):
        assert a.shape == tuple(b.shape), name
        np.testing.assert_allclose(a, b.numpy(), rtol=tolerance, atol=tolerance, err_msg=name)


def op_types(model):
    return [node.op_type for node in model.graph.node]


CONFIGS = {
    "one layer": {},
    "two layers": dict(num_layers=2),
    "bidirectional": dict(bidirectional=True),
    "batch_first": dict(batch_first=True),
    "paper squashers": dict(activation="paper"),
    "blocks": dict(cells_per_block=2),
    "no bias": dict(bias=False),
    "two layers, bidirectional, paper, blocks of 3, no bias":
        dict(num_layers=2, bidirectional=True, activation="paper", cells_per_block=3, bias=False),
    "gate feedback": dict(gate_feedback=True),
    "gate feedback, blocks, paper, two layers, bidirectional":
        dict(gate_feedback=True, cells_per_block=2, activation="paper", num_layers=2,
             bidirectional=True),
}


# hx (h0, s0) given on three of the configurations, none on all of them.
WITH_STATE = ["one layer", "two layers, bidirectional, paper, blocks of 3, no bias",
              "gate feedback, blocks, paper, two layers, bidirectional"]
CASES = [(config, False) for config in CONFIGS] + [(config, True) for config in WITH_STATE]


@pytest.mark.parametrize("config, with_state", CASES,
                         ids=[f"{c}{', hx' if h else ''}" for c, h in CASES])
@pytest.mark.parametrize("dynamo", [True, False], ids=["default exporter", "torchscript exporter"])
def test_export_runs_in_onnxruntime(tmp_path, dynamo, config, with_state):
    options = CONFIGS[config]
    torch.manual_seed(0)
    module = lstm1997.LSTM(I, H, **options).eval()
    batch_first = options.get("batch_first", False)

    def args_for(T, B):
        x = make_input(T, B, batch_first)
        return (x, make_state(module, B)) if with_state else (x,)

    path = tmp_path / "model.onnx"
    model = export(module, args_for(*TRACED), path, dynamo, batch_first)
    onnx.checker.check_model(model)
    types = op_types(model)
    if options.get("gate_feedback"):  # a Scan (TorchScript exporter: a Loop) per layer and direction
        assert types.count("Scan" if dynamo else "Loop") == module.num_layers * (1 + module.bidirectional)
        assert "LSTM" not in types
    else:  # one ONNX LSTM per layer, both directions in one, the weight rewriting folded away
        assert types.count("LSTM") == module.num_layers
        directions = [a.s for node in model.graph.node if node.op_type == "LSTM"
                      for a in node.attribute if a.name == "direction"]
        assert directions == [b"bidirectional" if module.bidirectional else b"forward"] * module.num_layers
        assert not {"MatMul", "Scan", "Loop"} & set(types), types
        weights = {initializer.name for initializer in model.graph.initializer}
        assert not [node for node in model.graph.node
                    if node.op_type in ("Gather", "Mul", "Concat") and node.input[0] in weights]
    for T, B in [TRACED] + OTHERS:
        assert_matches_eager(module, path, args_for(T, B), 1e-5)


@pytest.mark.parametrize("with_state", [False, True], ids=["no hx", "hx"])
@pytest.mark.parametrize("dynamo", [True, False], ids=["default exporter", "torchscript exporter"])
def test_cell_exports(tmp_path, dynamo, with_state):
    torch.manual_seed(0)
    cell = lstm1997.LSTMCell(I, H, cells_per_block=2, activation="paper").eval()
    path = tmp_path / "cell.onnx"

    def args_for(B):
        x = torch.randn(B, I)
        return (x, (torch.randn(B, H), torch.randn(B, H))) if with_state else (x,)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            B = torch.export.Dim("B")
            shapes = ({0: B}, ({0: B}, {0: B})) if with_state else ({0: B},)
            torch.onnx.export(cell, args_for(2), path, dynamo=True, dynamic_shapes=shapes,
                              custom_translation_table=lstm1997.onnx.translation_table)
        else:
            names = ["input", "h0", "s0"] if with_state else ["input"]
            torch.onnx.export(cell, args_for(2), path, dynamo=False, input_names=names,
                              dynamic_axes={name: {0: "B"} for name in names})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for B in (2, 5):
        args = args_for(B)
        with torch.no_grad():
            expected = cell(*args)
        flat = [args[0]] + (list(args[1]) if with_state else [])
        feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), flat)}
        for a, b in zip(session.run(None, feeds), expected):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)


def test_unbatched_input_exports(tmp_path):
    torch.manual_seed(0)
    module = lstm1997.LSTM(I, H, num_layers=2).eval()
    path = tmp_path / "unbatched.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(7, I),), path, dynamo=True,
                          custom_translation_table=lstm1997.onnx.translation_table,
                          dynamic_shapes=({0: torch.export.Dim("T")},))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(12, I)
    with torch.no_grad():
        output, (h_n, s_n) = module(x)
    for a, b in zip(session.run(None, {session.get_inputs()[0].name: x.numpy()}), (output, h_n, s_n)):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamo", [True, False], ids=["default exporter", "torchscript exporter"])
def test_float64_exports_as_scan(tmp_path, dynamo):
    """onnxruntime has no float64 LSTM kernel: the layers go as a Scan (TorchScript exporter: a
    Loop), which it runs."""
    torch.manual_seed(0)
    module = lstm1997.LSTM(I, H, cells_per_block=2, num_layers=2).double().eval()
    path = tmp_path / "double.onnx"
    model = export(module, (make_input(*TRACED, dtype=torch.float64),), path, dynamo=dynamo)
    assert op_types(model).count("Scan" if dynamo else "Loop") == 2
    for T, B in [TRACED] + OTHERS:
        assert_matches_eager(module, path, (make_input(T, B, dtype=torch.float64),), 1e-10)


def test_float16_exports_as_scan(tmp_path):
    torch.manual_seed(0)
    module = lstm1997.LSTM(I, H, bidirectional=True).eval()
    path = tmp_path / "half.onnx"
    model = export(module.half(), (make_input(*TRACED, dtype=torch.float16),), path, dynamo=True)
    assert op_types(model).count("Scan") == 2
    x = make_input(11, 4)
    got = run_onnx(path, (x.half(),))
    with torch.no_grad():
        expected = module.float()(x)
    np.testing.assert_allclose(got[0].astype(np.float32), expected[0].numpy(), atol=5e-3)


def messages(error):
    """The messages of an exception and of every exception it came from."""
    text = []
    while error is not None:
        text.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(text)


@pytest.mark.parametrize("dynamo", [True, False], ids=["default exporter", "torchscript exporter"])
def test_refusals(tmp_path, dynamo):
    """What cannot be expressed fails with a message naming it: packed input through the default
    exporter; packed input into a layer that goes as a Scan or Loop (gate feedback)."""
    if dynamo:
        rnn, pattern = lstm1997.LSTM(I, H), "a PackedSequence cannot be exported by the default ONNX exporter"
    else:
        rnn, pattern = (lstm1997.LSTM(I, H, gate_feedback=True),
                        "packed input with gate feedback or in a dtype other than float32 cannot "
                        "be exported (the Loop over the steps takes no sequence lengths)")
    with pytest.raises(Exception) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = {"custom_translation_table": lstm1997.onnx.translation_table} if dynamo else {}
        torch.onnx.export(Packing(rnn).eval(), (torch.randn(5, 2, I), torch.tensor([5, 3])),
                          tmp_path / "refused.onnx", dynamo=dynamo, **kwargs)
    assert pattern in messages(caught.value)


class Packing(torch.nn.Module):
    """Padded input and lengths, packed for the LSTM and padded again: how a model feeds
    sequences of several lengths to an RNN."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, lengths, h0=None, s0=None):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        output, (h_n, s_n) = self.rnn(packed, None if h0 is None else (h0, s0))
        return torch.nn.utils.rnn.pad_packed_sequence(output)[0], h_n, s_n


@pytest.mark.parametrize("with_state", [False, True], ids=["no hx", "hx"])
@pytest.mark.parametrize("options", [{}, dict(bidirectional=True),
                                     dict(num_layers=2, bidirectional=True, activation="paper",
                                          cells_per_block=3, bias=False)],
                         ids=["one direction", "bidirectional", "two layers, paper, blocks"])
def test_packed_input_exports_as_sequence_lens(tmp_path, options, with_state):
    """The TorchScript-based exporter turns packing into ONNX's sequence_lens, as it does for
    torch.nn.LSTM: each sequence stops at its own length, both directions."""
    torch.manual_seed(0)
    model = Packing(lstm1997.LSTM(I, H, **options)).eval()

    def args_for(T, lengths):
        x, lengths = torch.randn(T, len(lengths), I), torch.tensor(lengths)
        return (x, lengths, *make_state(model.rnn, len(lengths))) if with_state else (x, lengths)

    names = ["x", "lengths"] + (["h0", "s0"] if with_state else [])
    axes = {"x": {0: "T", 1: "B"}, "lengths": {0: "B"}, "h0": {1: "B"}, "s0": {1: "B"},
            "output": {0: "T", 1: "B"}, "h_n": {1: "B"}, "s_n": {1: "B"}}
    path = tmp_path / "packed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args_for(5, [5, 2, 4]), path, dynamo=False, input_names=names,
                          output_names=["output", "h_n", "s_n"],
                          dynamic_axes={k: v for k, v in axes.items()
                                        if k in names or k in ("output", "h_n", "s_n")})
    types = op_types(onnx.load(str(path)))
    assert types.count("LSTM") == model.rnn.num_layers
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for T, lengths in [(5, [5, 2, 4]), (9, [3, 9, 1, 6, 9])]:
        args = args_for(T, lengths)
        with torch.no_grad():
            expected = model(*args)
        got = session.run(None, {name: a.numpy() for name, a in zip(names, args)})
        for name, a, b in zip(("output", "h_n", "s_n"), got, expected):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_the_default_exporter_finds_the_translation_by_itself(tmp_path):
    """torch.onnx.export(model, args, path), as for torch.nn.LSTM: no translation table passed."""
    assert lstm1997.onnx.registered_with_the_default_exporter
    torch.manual_seed(0)
    module = lstm1997.LSTM(I, H, num_layers=2, bidirectional=True).eval()
    path = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        T, B = torch.export.Dim("T"), torch.export.Dim("B")
        torch.onnx.export(module, (make_input(*TRACED),), path, dynamic_shapes=({0: T, 1: B},))
    assert op_types(onnx.load(str(path))).count("LSTM") == 2
    for T, B in [TRACED] + OTHERS:
        assert_matches_eager(module, path, (make_input(T, B),), 1e-5)


def test_translation_checks_the_layout():
    """The translation's own checks: a weight layout that is no layer of the op."""
    with pytest.raises(ValueError, match=r"weight_ih: expected K \+ H \+ K rows"):
        lstm1997.onnx._layer_sizes([11, 3], [11, 4], 3, False)
    with pytest.raises(ValueError, match=r"weight_hh: expected shape \[18, 6\]"):
        lstm1997.onnx._layer_sizes([18, 3], [18, 5], 1, False)
    with pytest.raises(ValueError, match="cells_per_block: expected a positive number"):
        lstm1997.onnx._layer_sizes([18, 3], [18, 6], 0, False)
    with pytest.raises(ValueError, match='activation: expected "tanh" or "paper"'):
        lstm1997.onnx._check_options("relu", None)
