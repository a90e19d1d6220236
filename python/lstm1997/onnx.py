"""ONNX export: the translation of the layer ops (``torch.ops.lstm1997.lstm`` and
``lstm_bidirectional``) for both of PyTorch's exporters.

PyTorch's exporters know ATen ops, not this package's, so the translation is handed to them:

* the default exporter (``torch.onnx.export(..., dynamo=True)``, built on torch.export and
  onnxscript) takes it as ``custom_translation_table=lstm1997.onnx.translation_table``;
* the TorchScript-based exporter (``dynamo=False``) finds it by itself once this module is
  imported (``torch.onnx.register_custom_op_symbolic``).

One call of ``lstm`` (one layer, one direction) or of ``lstm_bidirectional`` (one layer, both
directions) becomes one ONNX ``LSTM`` operator: the 1997 cell is
ONNX's LSTM with the forget gate pinned open (its weights zero, its bias large enough that the
sigmoid rounds to 1), gate rows reordered to ONNX's i, o, f, c, a memory cell block's shared gate
rows repeated for each of its cells, and the paper's squashers as ``ScaledTanh``
(g = 4 sigmoid(x) - 2 = 2 tanh(x/2), h = 2 sigmoid(x) - 1 = tanh(x/2)). The weight rewriting is
ONNX ops on the weights, which the exporters fold into the stored initializers. Gate feedback
(every cell and gate also sees the gate outputs of t-1) is no LSTM that ONNX defines: the default
exporter writes it as a ``Scan`` over the steps, the TorchScript one refuses it with a message.

Packed sequences: the TorchScript-based exporter records ``pack_padded_sequence`` as a placeholder
that hands the padded input and the lengths to the op as ``input`` and ``batch_sizes``; the
translation passes them to ONNX's LSTM as ``sequence_lens``, and the exporter's own pass removes
the placeholder, as it does for torch.nn.LSTM. torch.export cannot capture packing (its sizes are
data): the default exporter refuses it with a message. The exported graph is for inference:
``truncate`` (a training option) plays no part.
"""
from __future__ import annotations

import itertools
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["translation_table", "FORGET_BIAS"]

# The forget gate's bias: sigmoid(FORGET_BIAS) is 1 in float16, float32 and float64.
FORGET_BIAS = 1.0e4

_ACTIVATIONS = {
    # activation: (ONNX activations f, g, h; activation_alpha; activation_beta)
    "tanh": (["Sigmoid", "Tanh", "Tanh"], None, None),
    "paper": (["Sigmoid", "ScaledTanh", "ScaledTanh"], [2.0, 1.0], [0.5, 0.5]),
}


def _refuse(message: str) -> None:
    raise ValueError(f"lstm1997 ONNX export: {message}")


def _layer_sizes(weight_ih_shape: Sequence[int], weight_hh_shape: Sequence[int],
                 cells_per_block: int, gate_feedback: bool):
    """(K, H) from the weights' static shapes: G = K + H + K gate rows, H = K * S cells."""
    if cells_per_block < 1:
        _refuse(f"cells_per_block: expected a positive number, got {cells_per_block}")
    gate_rows = int(weight_ih_shape[0])
    if gate_rows % (cells_per_block + 2) != 0:
        _refuse(f"weight_ih: expected K + H + K rows (a multiple of cells_per_block + 2 = "
                f"{cells_per_block + 2}), got {gate_rows}")
    blocks = gate_rows // (cells_per_block + 2)
    hidden = blocks * cells_per_block
    recurrent = gate_rows if gate_feedback else hidden
    if list(weight_hh_shape) != [gate_rows, recurrent]:
        _refuse(f"weight_hh: expected shape {[gate_rows, recurrent]}, got {list(weight_hh_shape)}")
    return blocks, hidden


def _check_options(activation: str, batch_sizes: Any) -> None:
    if batch_sizes is not None:
        _refuse("packed input (a PackedSequence, batch_sizes) cannot be exported by the default "
                "exporter (torch.export cannot capture packing): export with dynamo=False, or a "
                "model that takes padded input of shape (seq_len, batch, input_size)")
    if activation not in _ACTIVATIONS:
        _refuse(f'activation: expected "tanh" or "paper", got "{activation}"')


def _gate_index(blocks: int, hidden: int, cells_per_block: int) -> np.ndarray:
    """Rows of weight_ih / weight_hh / the biases in ONNX's gate order i, o, f, c, one per cell:
    a block's gate row repeated for its cells; the forget rows (zeroed later) reuse the input
    gate's so that one Gather makes all four."""
    cells = np.arange(hidden)
    block = cells // cells_per_block
    return np.concatenate([block, block + blocks + hidden, block, cells + blocks]).astype(np.int64)


def _forget_mask(hidden: int) -> np.ndarray:
    """1 on the input, output and cell-input rows, 0 on the forget rows (ONNX order i, o, f, c)."""
    mask = np.ones(4 * hidden)
    mask[2 * hidden:3 * hidden] = 0.0
    return mask


def _forget_bias(hidden: int) -> np.ndarray:
    bias = np.zeros(4 * hidden)
    bias[2 * hidden:3 * hidden] = FORGET_BIAS
    return bias


class _Graph:
    """The few graph-building calls the translation needs, on either exporter's graph."""

    def op(self, op_type: str, *inputs, outputs: int = 1, **attributes):
        raise NotImplementedError

    def constant(self, array: np.ndarray):
        raise NotImplementedError

    def constant_like(self, array: np.ndarray, like):
        """A floating-point constant in the dtype of `like`."""
        return self.op("CastLike", self.constant(np.asarray(array, dtype=np.float64)), like)


def _onnx_lstm(graph: _Graph, input, directions, initial_h, initial_c, activation: str,
               blocks: int, hidden: int, cells_per_block: int, sequence_lens=None):
    """ONNX's LSTM over one or both directions of a layer without gate feedback. `directions`
    holds (weight_ih, weight_hh, bias_ih, bias_hh) per direction; initial_h and initial_c are
    (num_directions, B, H) or None. Returns ONNX's (Y, Y_h, Y_c)."""
    index = graph.constant(_gate_index(blocks, hidden, cells_per_block))
    mask = graph.constant_like(_forget_mask(hidden)[:, None], input)
    flat_mask = graph.constant_like(_forget_mask(hidden), input)
    forget_bias = graph.constant_like(_forget_bias(hidden), input)
    zero = graph.constant(np.array([0], dtype=np.int64))

    def onnx_rows(weight):  # (G, C) -> (1, 4H, C), forget rows zero
        return graph.op("Unsqueeze", graph.op("Mul", graph.op("Gather", weight, index, axis=0),
                                              mask), zero)

    def onnx_bias(bias_ih, bias_hh):  # -> (1, 8H): input biases, then recurrent ones
        input_bias = forget_bias
        if bias_ih is not None:
            input_bias = graph.op("Add", graph.op("Mul", graph.op("Gather", bias_ih, index, axis=0),
                                                  flat_mask), forget_bias)
        recurrent_bias = graph.constant_like(np.zeros(4 * hidden), input)
        if bias_hh is not None:
            recurrent_bias = graph.op("Mul", graph.op("Gather", bias_hh, index, axis=0), flat_mask)
        return graph.op("Unsqueeze", graph.op("Concat", input_bias, recurrent_bias, axis=0), zero)

    def stacked(values):
        return values[0] if len(values) == 1 else graph.op("Concat", *values, axis=0)

    weight = stacked([onnx_rows(w_ih) for w_ih, _, _, _ in directions])
    recurrence = stacked([onnx_rows(w_hh) for _, w_hh, _, _ in directions])
    bias = stacked([onnx_bias(b_ih, b_hh) for _, _, b_ih, b_hh in directions])
    # ONNX takes both initial states or neither: a missing one is zero.
    if initial_h is None and initial_c is not None:
        initial_h = graph.op("Mul", initial_c, graph.constant_like(np.array(0.0), input))
    if initial_c is None and initial_h is not None:
        initial_c = graph.op("Mul", initial_h, graph.constant_like(np.array(0.0), input))
    activations, alpha, beta = _ACTIVATIONS[activation]
    count = len(directions)
    attributes = {"hidden_size": hidden, "activations": activations * count,
                  "direction": "bidirectional" if count == 2 else "forward"}
    if alpha is not None:
        attributes.update(activation_alpha=alpha * count, activation_beta=beta * count)
    return graph.op("LSTM", input, weight, recurrence, bias, sequence_lens, initial_h, initial_c,
                    outputs=3, **attributes)


def _lstm_operator(graph: _Graph, input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0,
                   activation: str, blocks: int, hidden: int, cells_per_block: int,
                   sequence_lens=None):
    """One direction as ONNX's LSTM: (output, h_n, s_n) as lstm returns them."""
    zero = graph.constant(np.array([0], dtype=np.int64))
    y, y_h, y_c = _onnx_lstm(
        graph, input, [(weight_ih, weight_hh, bias_ih, bias_hh)],
        None if h0 is None else graph.op("Unsqueeze", h0, zero),
        None if s0 is None else graph.op("Unsqueeze", s0, zero),
        activation, blocks, hidden, cells_per_block, sequence_lens)
    one = graph.constant(np.array([1], dtype=np.int64))
    return graph.op("Squeeze", y, one), graph.op("Squeeze", y_h, zero), \
        graph.op("Squeeze", y_c, zero)


def _bidirectional_operator(graph: _Graph, input, directions, h0, s0, activation: str,
                            blocks: int, hidden: int, cells_per_block: int, sequence_lens=None):
    """Both directions as one ONNX LSTM (direction="bidirectional"): (output, h_n, s_n) as
    lstm_bidirectional returns them."""
    y, y_h, y_c = _onnx_lstm(graph, input, directions, h0, s0, activation, blocks, hidden,
                             cells_per_block, sequence_lens)
    # Y is (T, 2, B, H); the op's output is (T, B, 2H), [forward | reverse].
    y = graph.op("Transpose", y, perm=[0, 2, 1, 3])
    return graph.op("Reshape", y, graph.constant(np.array([0, 0, -1], dtype=np.int64))), y_h, y_c


_scan_bodies = itertools.count()

# --- the default exporter (torch.export + onnxscript) ---------------------------------------------

class _OnnxscriptGraph(_Graph):
    def __init__(self):
        from onnxscript import opset18

        self._opset = opset18

    def op(self, op_type, *inputs, outputs=1, **attributes):
        return getattr(self._opset, op_type)(*inputs, **attributes)

    def constant(self, array):
        import onnx_ir as ir

        return self._opset.Constant(value=ir.tensor(np.ascontiguousarray(array)))


def _scan_layer(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, activation: str,
                blocks: int, hidden: int, cells_per_block: int, gate_feedback: bool,
                reverse: bool = False):
    """The layer as a Scan over the steps: the paper's network (gate feedback), and the layers in
    float64 and float16, for which onnxruntime has no LSTM kernel. The input's projection and the
    biases are one MatMul before it; each step multiplies the recurrent state of t-1 (h, or with
    gate feedback r = [input gates | cell outputs | output gates]) by weight_hh and runs the
    cell."""
    import onnx_ir as ir
    from onnxscript import opset18 as op

    graph = _OnnxscriptGraph()
    gate_rows = blocks + hidden + blocks
    recurrent_width = gate_rows if gate_feedback else hidden
    projected = op.MatMul(input, op.Transpose(weight_ih, perm=[1, 0]))  # (T, B, G)
    for bias in (bias_ih, bias_hh):
        if bias is not None:
            projected = op.Add(projected, bias)
    # Zero initial states have the batch size of the input: (B, width) from its shape.
    batch = op.Shape(input, start=1, end=2)
    if h0 is None:
        h0 = op.Expand(graph.constant_like(np.zeros(1), input),
                       op.Concat(batch, graph.constant(np.array([recurrent_width])), axis=0))
    if s0 is None:
        s0 = op.Expand(graph.constant_like(np.zeros(1), input),
                       op.Concat(batch, graph.constant(np.array([hidden])), axis=0))
    recurrent_weight = op.Transpose(weight_hh, perm=[1, 0])  # (R, G), read by the body

    dtype = input.dtype
    # Every value of every body gets a name of its own: ONNX wants them unique in the model.
    prefix = f"lstm1997_step{next(_scan_bodies)}_"
    state_in = ir.Value(name=prefix + "recurrent_in", type=ir.TensorType(dtype),
                        shape=ir.Shape([None, recurrent_width]))
    cell_in = ir.Value(name=prefix + "cell_state_in", type=ir.TensorType(dtype),
                       shape=ir.Shape([None, hidden]))
    step_in = ir.Value(name=prefix + "projected_step", type=ir.TensorType(dtype),
                       shape=ir.Shape([None, gate_rows]))
    nodes: List[ir.Node] = []

    def node(op_type, *inputs, **attributes):
        from onnxscript.ir import convenience

        made = ir.Node("", op_type, inputs=list(inputs),
                       attributes=convenience.convert_attributes(attributes), num_outputs=1)
        made.outputs[0].name = f"{prefix}{len(nodes)}"
        nodes.append(made)
        return made.outputs[0]

    def constant(array):
        return node("Constant", value=ir.tensor(np.ascontiguousarray(array)))

    def float_constant(value):
        return node("CastLike", constant(np.array(value, dtype=np.float64)), step_in)

    def rows(net, start, stop):
        return node("Slice", net, constant(np.array([start])), constant(np.array([stop])),
                    constant(np.array([1])))

    def squash(x, scale):  # tanh, or the paper's scale * tanh(x / 2)
        if activation == "tanh":
            return node("Tanh", x)
        return node("Mul", node("Tanh", node("Mul", x, float_constant(0.5))), float_constant(scale))

    net = node("Add", step_in, node("MatMul", state_in, recurrent_weight))
    input_gate = node("Sigmoid", rows(net, 0, blocks))
    cell_input = squash(rows(net, blocks, blocks + hidden), 2.0)
    output_gate = node("Sigmoid", rows(net, blocks + hidden, gate_rows))
    cell_block = constant((np.arange(hidden) // cells_per_block).astype(np.int64))
    per_cell_input_gate = node("Gather", input_gate, cell_block, axis=1)
    per_cell_output_gate = node("Gather", output_gate, cell_block, axis=1)
    cell_state = node("Add", cell_in, node("Mul", per_cell_input_gate, cell_input))
    cell_output = node("Mul", per_cell_output_gate, squash(cell_state, 1.0))
    if gate_feedback:
        recurrent = node("Concat", input_gate, cell_output, output_gate, axis=1)
    else:
        recurrent = node("Identity", cell_output)
    step_output = node("Identity", cell_output)
    for value, name in ((recurrent, "recurrent_out"), (cell_state, "cell_state_out"),
                        (step_output, "cell_output")):
        value.name = prefix + name
    body = ir.Graph([state_in, cell_in, step_in], [recurrent, cell_state, step_output],
                    nodes=nodes, name=prefix + "body")
    # reverse: the steps run from the last to the first, the outputs stay in the input's order.
    h_n, s_n, output = _traced_node("Scan", [h0, s0, projected], 3, body=body, num_scan_inputs=1,
                                    scan_input_directions=[int(reverse)],
                                    scan_output_directions=[int(reverse)])
    return output, h_n, s_n


def _traced_node(op_type: str, inputs, num_outputs: int, **attributes):
    """A node of several outputs in the graph the default exporter is building. Its op recorder
    gives an ONNX op as many outputs as the op's schema lists, one for Scan's variadic outputs,
    so the node is appended to the recorder directly, as PyTorch's own translation of
    torch.ops.higher_order.scan does (torch/onnx/_internal/exporter/_torchlib/ops/hop.py)."""
    import onnx_ir as ir
    from onnxscript.ir import convenience
    from torch.onnx._internal.exporter import _core

    tracer = _core.current_tracer
    if tracer is None:
        raise AssertionError("lstm1997 ONNX export: no graph is being built")
    made = ir.Node("", op_type, inputs=list(inputs),
                   attributes=convenience.convert_attributes(attributes),
                   num_outputs=num_outputs, version=tracer.opset.version)
    tracer.nodes.append(made)
    return made.outputs


def _lstm_dynamo(input, weight_ih, weight_hh, bias_ih=None, bias_hh=None, h0=None, s0=None,
                 truncate: bool = True, activation: str = "tanh", batch_sizes=None,
                 cells_per_block: int = 1, gate_feedback: bool = False):
    _check_options(activation, batch_sizes)
    blocks, hidden = _layer_sizes(weight_ih.shape, weight_hh.shape, cells_per_block, gate_feedback)
    import onnx_ir as ir

    if gate_feedback or input.dtype != ir.DataType.FLOAT:
        return _scan_layer(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, activation,
                           blocks, hidden, cells_per_block, gate_feedback)
    return _lstm_operator(_OnnxscriptGraph(), input, weight_ih, weight_hh, bias_ih, bias_hh, h0,
                          s0, activation, blocks, hidden, cells_per_block)


def _lstm_bidirectional_dynamo(input, weight_ih, weight_hh, bias_ih, bias_hh, weight_ih_reverse,
                               weight_hh_reverse, bias_ih_reverse, bias_hh_reverse, h0=None,
                               s0=None, truncate: bool = True, activation: str = "tanh",
                               batch_sizes=None, cells_per_block: int = 1,
                               gate_feedback: bool = False):
    import onnx_ir as ir
    from onnxscript import opset18 as op

    _check_options(activation, batch_sizes)
    blocks, hidden = _layer_sizes(weight_ih.shape, weight_hh.shape, cells_per_block, gate_feedback)
    directions = [(weight_ih, weight_hh, bias_ih, bias_hh),
                  (weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse)]
    if not gate_feedback and input.dtype == ir.DataType.FLOAT:
        return _bidirectional_operator(_OnnxscriptGraph(), input, directions, h0, s0, activation,
                                       blocks, hidden, cells_per_block)
    results = []
    for direction, weights in enumerate(directions):
        def state(stacked):
            return None if stacked is None else op.Gather(stacked, op.Constant(value_int=direction),
                                                          axis=0)

        results.append(_scan_layer(input, *weights, state(h0), state(s0), activation, blocks,
                                   hidden, cells_per_block, gate_feedback, reverse=direction == 1))
    (output, h_n, s_n), (output_reverse, h_n_reverse, s_n_reverse) = results
    zero = op.Constant(value_ints=[0])
    return (op.Concat(output, output_reverse, axis=-1),
            op.Concat(op.Unsqueeze(h_n, zero), op.Unsqueeze(h_n_reverse, zero), axis=0),
            op.Concat(op.Unsqueeze(s_n, zero), op.Unsqueeze(s_n_reverse, zero), axis=0))


translation_table = {torch.ops.lstm1997.lstm.default: _lstm_dynamo,
                     torch.ops.lstm1997.lstm_bidirectional.default: _lstm_bidirectional_dynamo}
"""``custom_translation_table`` for ``torch.onnx.export`` (the default, torch.export-based
exporter): ``torch.onnx.export(model, args, path, custom_translation_table=translation_table)``."""


# --- the TorchScript-based exporter (dynamo=False) -----------------------------------------------

class _TorchScriptGraph(_Graph):
    _SUFFIX = {int: "i", float: "f", str: "s"}

    def __init__(self, g):
        self._g = g

    def op(self, op_type, *inputs, outputs=1, **attributes):
        unused = _torchscript_exporter_module("symbolic_opset9").unused
        inputs = list(inputs)
        while inputs and inputs[-1] is None:
            inputs.pop()
        inputs = [unused(self._g) if value is None else value for value in inputs]
        named = {}
        for name, value in attributes.items():
            kind = type(value[0]) if isinstance(value, (list, tuple)) else type(value)
            named[f"{name}_{self._SUFFIX[kind]}"] = value
        return self._g.op(op_type, *inputs, outputs=outputs, **named)

    def constant(self, array):
        return self._g.op("Constant", value_t=torch.from_numpy(np.ascontiguousarray(array)))

    def constant_like(self, array, like):
        # Typed at once rather than CastLike: the exporter's constant folding then folds the
        # weight rewriting into the initializers.
        return self.constant(np.asarray(array, dtype=np.float32))


def _static_shape(value) -> Optional[List[int]]:
    sizes = value.type().sizes()
    return None if sizes is None else list(sizes)


def _torchscript_exporter_module(name: str):
    """A module of the TorchScript-based exporter: torch.onnx.<name> in older releases."""
    import importlib

    try:
        return importlib.import_module(f"torch.onnx._internal.torchscript_exporter.{name}")
    except ImportError:
        return importlib.import_module(f"torch.onnx.{name}")


def _lstm_torchscript(g, input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, truncate,
                      activation, batch_sizes, cells_per_block, gate_feedback):
    symbolic_helper = _torchscript_exporter_module("symbolic_helper")

    def optional(value):
        return None if symbolic_helper._is_none(value) else value

    activation, cells_per_block, blocks, hidden = _torchscript_layer_options(
        input, weight_ih, weight_hh, activation, cells_per_block, gate_feedback)
    # Packed input: the exporter traces pack_padded_sequence as a placeholder whose outputs are
    # the padded input and the lengths; the lengths reach this op as batch_sizes, and its pass
    # (as for torch.nn.LSTM) takes the placeholder away once an LSTM with sequence_lens reads it.
    return _lstm_operator(_TorchScriptGraph(g), input, weight_ih, weight_hh, optional(bias_ih),
                          optional(bias_hh), optional(h0), optional(s0), activation, blocks,
                          hidden, cells_per_block, optional(batch_sizes))


def _torchscript_layer_options(input, weight_ih, weight_hh, activation, cells_per_block,
                               gate_feedback):
    """The options of a call, as constants, checked for what the TorchScript exporter writes:
    (activation, cells_per_block, blocks, hidden)."""
    symbolic_helper = _torchscript_exporter_module("symbolic_helper")
    activation = symbolic_helper._maybe_get_const(activation, "s")
    cells_per_block = int(symbolic_helper._maybe_get_const(cells_per_block, "i"))
    gate_feedback = symbolic_helper._maybe_get_const(gate_feedback, "b")
    _check_options(activation, None)
    if gate_feedback:
        _refuse("gate_feedback=True cannot be exported by the TorchScript-based exporter "
                "(dynamo=False): use the default exporter with "
                "custom_translation_table=lstm1997.onnx.translation_table, which writes it as a Scan")
    dtype = input.type().scalarType()
    if dtype != "Float":
        _refuse(f"input: the TorchScript-based exporter (dynamo=False) writes ONNX's LSTM, which "
                f"onnxruntime runs in float32 only; got {dtype}: export a float32 model, or use "
                f"the default exporter, which writes other dtypes as a Scan")
    weight_ih_shape, weight_hh_shape = _static_shape(weight_ih), _static_shape(weight_hh)
    if weight_ih_shape is None or weight_hh_shape is None:
        _refuse("the weights' shapes are unknown to the exporter")
    blocks, hidden = _layer_sizes(weight_ih_shape, weight_hh_shape, cells_per_block, False)
    return activation, cells_per_block, blocks, hidden


def _lstm_bidirectional_torchscript(g, input, weight_ih, weight_hh, bias_ih, bias_hh,
                                    weight_ih_reverse, weight_hh_reverse, bias_ih_reverse,
                                    bias_hh_reverse, h0, s0, truncate, activation, batch_sizes,
                                    cells_per_block, gate_feedback):
    symbolic_helper = _torchscript_exporter_module("symbolic_helper")

    def optional(value):
        return None if symbolic_helper._is_none(value) else value

    activation, cells_per_block, blocks, hidden = _torchscript_layer_options(
        input, weight_ih, weight_hh, activation, cells_per_block, gate_feedback)
    directions = [(weight_ih, weight_hh, optional(bias_ih), optional(bias_hh)),
                  (weight_ih_reverse, weight_hh_reverse, optional(bias_ih_reverse),
                   optional(bias_hh_reverse))]
    return _bidirectional_operator(_TorchScriptGraph(g), input, directions, optional(h0),
                                   optional(s0), activation, blocks, hidden, cells_per_block,
                                   optional(batch_sizes))


# CastLike, which the translation uses for its floating-point constants, came with opset 15.
torch.onnx.register_custom_op_symbolic("lstm1997::lstm", _lstm_torchscript, 15)
torch.onnx.register_custom_op_symbolic("lstm1997::lstm_bidirectional",
                                       _lstm_bidirectional_torchscript, 15)
