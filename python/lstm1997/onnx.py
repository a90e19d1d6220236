"""ONNX export: the translation of the layer ops (``torch.ops.lstm1997.lstm`` and
``lstm_bidirectional``) for both of PyTorch's exporters.

PyTorch's exporters know ATen ops, not this package's, so the translation is handed to them:

* the default exporter (``torch.onnx.export(..., dynamo=True)``, built on torch.export and
  onnxscript) finds it by itself once this module is imported, where PyTorch's table of
  translations is where this module looks for it (``registered_with_the_default_exporter``);
  ``custom_translation_table=lstm1997.onnx.translation_table`` passes it explicitly;
* the TorchScript-based exporter (``dynamo=False``) finds it by itself once this module is
  imported (``torch.onnx.register_custom_op_symbolic``).

One call of ``lstm`` (one layer, one direction) or of ``lstm_bidirectional`` (one layer, both
directions) becomes one ONNX ``LSTM`` operator: the 1997 cell is
ONNX's LSTM with the forget gate pinned open (its weights zero, its bias large enough that the
sigmoid rounds to 1), gate rows reordered to ONNX's i, o, f, c, a memory cell block's shared gate
rows repeated for each of its cells, and the paper's squashers as ``ScaledTanh``
(g = 4 sigmoid(x) - 2 = 2 tanh(x/2), h = 2 sigmoid(x) - 1 = tanh(x/2)). The weight rewriting is
ONNX ops on the weights, which the exporters fold into the stored initializers. Gate feedback
(every cell and gate also sees the gate outputs of t-1) is no LSTM that ONNX defines, and
onnxruntime runs its LSTM in float32 only: those layers go as a ``Scan`` over the steps (the
TorchScript-based exporter writes subgraphs for ``Loop`` and ``If`` only: a ``Loop`` there).

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

__all__ = ["translation_table", "registered_with_the_default_exporter", "FORGET_BIAS"]

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


def _step_body(body: _Graph, recurrent, cell_state, projected_step, recurrent_weight,
               activation: str, blocks: int, hidden: int, cells_per_block: int,
               gate_feedback: bool):
    """One step of the cell inside a Scan body: (recurrent state, cell state, cell output) of t
    from those of t-1 and the step's projected input x_t W_ih^T + b."""
    gate_rows = blocks + hidden + blocks

    def rows(net, start, stop):
        return body.op("Slice", net, body.constant(np.array([start])),
                       body.constant(np.array([stop])), body.constant(np.array([1])))

    def squash(x, scale):  # tanh, or the paper's scale * tanh(x / 2)
        if activation == "tanh":
            return body.op("Tanh", x)
        half = body.op("Mul", x, body.constant_like(np.array(0.5), projected_step))
        return body.op("Mul", body.op("Tanh", half),
                       body.constant_like(np.array(scale), projected_step))

    net = body.op("Add", projected_step, body.op("MatMul", recurrent, recurrent_weight))
    input_gate = body.op("Sigmoid", rows(net, 0, blocks))
    cell_input = squash(rows(net, blocks, blocks + hidden), 2.0)
    output_gate = body.op("Sigmoid", rows(net, blocks + hidden, gate_rows))
    cell_block = body.constant((np.arange(hidden) // cells_per_block).astype(np.int64))
    per_cell_input_gate = body.op("Gather", input_gate, cell_block, axis=1)
    per_cell_output_gate = body.op("Gather", output_gate, cell_block, axis=1)
    cell_state = body.op("Add", cell_state, body.op("Mul", per_cell_input_gate, cell_input))
    cell_output = body.op("Mul", per_cell_output_gate, squash(cell_state, 1.0))
    if gate_feedback:
        recurrent = body.op("Concat", input_gate, cell_output, output_gate, axis=1)
    else:
        recurrent = body.op("Identity", cell_output)
    return recurrent, cell_state, body.op("Identity", cell_output)


def _scan_layer(graph: _Graph, input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0,
                activation: str, blocks: int, hidden: int, cells_per_block: int,
                gate_feedback: bool, reverse: bool = False):
    """One direction of a layer as a Scan over the steps: the paper's network (gate feedback),
    and layers in float64 and float16, for which onnxruntime has no LSTM kernel. The input's
    projection and the biases are one MatMul before it; each step multiplies the recurrent state
    of t-1 (h, or with gate feedback r = [input gates | cell outputs | output gates]) by
    weight_hh and runs the cell. reverse: the steps run from the last to the first, the outputs
    stay in the input's order. Returns (output, h_n, s_n) as lstm does."""
    gate_rows = blocks + hidden + blocks
    recurrent_width = gate_rows if gate_feedback else hidden
    projected = graph.op("MatMul", input, graph.op("Transpose", weight_ih, perm=[1, 0]))
    for bias in (bias_ih, bias_hh):
        if bias is not None:
            projected = graph.op("Add", projected, bias)
    # Zero initial states have the batch size of the input: (B, width) from its shape.
    batch = graph.op("Shape", input, start=1, end=2)

    def zeros(width):
        shape = graph.op("Concat", batch, graph.constant(np.array([width])), axis=0)
        return graph.op("Expand", graph.constant_like(np.zeros(1), input), shape)

    h0 = zeros(recurrent_width) if h0 is None else h0
    s0 = zeros(hidden) if s0 is None else s0
    recurrent_weight = graph.op("Transpose", weight_hh, perm=[1, 0])  # (R, G), read by the body
    h_n, s_n, output = graph.scan(
        [h0, s0], [recurrent_width, hidden], projected, gate_rows, input,
        lambda body, states, step: _step_body(body, states[0], states[1], step, recurrent_weight,
                                              activation, blocks, hidden, cells_per_block,
                                              gate_feedback),
        reverse)
    return output, h_n, s_n


def _layer_as_scans(graph: _Graph, input, directions, h0, s0, activation: str, blocks: int,
                    hidden: int, cells_per_block: int, gate_feedback: bool):
    """Both directions as two Scans: (output, h_n, s_n) as lstm_bidirectional returns them."""
    results = []
    for direction, weights in enumerate(directions):
        def state(stacked):
            index = graph.constant(np.array(direction, dtype=np.int64))
            return None if stacked is None else graph.op("Gather", stacked, index, axis=0)

        results.append(_scan_layer(graph, input, *weights, state(h0), state(s0), activation,
                                   blocks, hidden, cells_per_block, gate_feedback,
                                   reverse=direction == 1))
    (output, h_n, s_n), (output_reverse, h_n_reverse, s_n_reverse) = results
    zero = graph.constant(np.array([0], dtype=np.int64))

    def stacked(a, b):
        return graph.op("Concat", graph.op("Unsqueeze", a, zero), graph.op("Unsqueeze", b, zero),
                        axis=0)

    return (graph.op("Concat", output, output_reverse, axis=-1), stacked(h_n, h_n_reverse),
            stacked(s_n, s_n_reverse))


# --- the default exporter (torch.export + onnxscript) ---------------------------------------------

class _OnnxscriptGraph(_Graph):
    def __init__(self):
        from onnxscript import opset18

        self._opset = opset18

    def op(self, op_type, *inputs, outputs=1, **attributes):
        return getattr(self._opset, op_type)(*inputs, **attributes)

    def constant(self, array):
        import onnx_ir as ir

        return self._opset.Constant(value=ir.tensor(np.array(array, order="C")))

    def scan(self, states, widths, step_input, step_width, like, body, reverse):
        import onnx_ir as ir

        dtype = like.dtype
        # Every value of every body gets a name of its own: ONNX wants them unique in the model.
        body_graph = _IrBody(f"lstm1997_step{next(_scan_bodies)}_")
        state_inputs = [body_graph.input(f"state{i}", dtype, width)
                        for i, width in enumerate(widths)]
        step = body_graph.input("step", dtype, step_width)
        outputs = body(body_graph, state_inputs, step)
        for i, value in enumerate(outputs):
            value.name = f"{body_graph.prefix}out{i}"
        graph = ir.Graph([*state_inputs, step], list(outputs), nodes=body_graph.nodes,
                         name=body_graph.prefix + "body")
        return _traced_node("Scan", [*states, step_input], len(outputs), body=graph,
                            num_scan_inputs=1, scan_input_directions=[int(reverse)],
                            scan_output_directions=[int(reverse)])


class _IrBody(_Graph):
    """A Scan body built as an onnx_ir graph: the default exporter's op recorder builds the
    outer graph only."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes = []

    def input(self, name, dtype, width):
        import onnx_ir as ir

        return ir.Value(name=self.prefix + name, type=ir.TensorType(dtype),
                        shape=ir.Shape([None, width]))

    def op(self, op_type, *inputs, outputs=1, **attributes):
        import onnx_ir as ir
        from onnxscript.ir import convenience

        made = ir.Node("", op_type, inputs=list(inputs),
                       attributes=convenience.convert_attributes(attributes), num_outputs=outputs)
        for i, value in enumerate(made.outputs):
            value.name = f"{self.prefix}{len(self.nodes)}_{i}"
        self.nodes.append(made)
        return made.outputs[0] if outputs == 1 else made.outputs

    def constant(self, array):
        import onnx_ir as ir

        return self.op("Constant", value=ir.tensor(np.array(array, order="C")))


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


def _layer(graph: _Graph, input, directions, h0, s0, activation: str, cells_per_block: int,
           gate_feedback: bool, weight_shapes, float32: bool, sequence_lens=None):
    """The translation of lstm (one direction in `directions`) or lstm_bidirectional (two), on
    either exporter's graph: ONNX's LSTM, or step by step where it cannot serve (gate feedback,
    or a dtype onnxruntime's LSTM does not run)."""
    blocks, hidden = _layer_sizes(*weight_shapes, cells_per_block, gate_feedback)
    options = (activation, blocks, hidden, cells_per_block)
    if gate_feedback or not float32:
        _refuse_packed_steps(sequence_lens)
        if len(directions) == 1:
            return _scan_layer(graph, input, *directions[0], h0, s0, *options, gate_feedback)
        return _layer_as_scans(graph, input, directions, h0, s0, *options, gate_feedback)
    if len(directions) == 1:
        return _lstm_operator(graph, input, *directions[0], h0, s0, *options, sequence_lens)
    return _bidirectional_operator(graph, input, directions, h0, s0, *options, sequence_lens)


def _refuse_packed_steps(sequence_lens) -> None:
    if sequence_lens is not None:
        _refuse("packed input with gate feedback or in a dtype other than float32 cannot be "
                "exported (the Loop over the steps takes no sequence lengths): export padded "
                "input")


def _dynamo_layer(input, directions, h0, s0, activation, batch_sizes, cells_per_block,
                  gate_feedback):
    import onnx_ir as ir

    _check_options(activation, batch_sizes)
    weight_ih, weight_hh = directions[0][:2]
    return _layer(_OnnxscriptGraph(), input, directions, h0, s0, activation, cells_per_block,
                  gate_feedback, (weight_ih.shape, weight_hh.shape),
                  input.dtype == ir.DataType.FLOAT)


def _lstm_dynamo(input, weight_ih, weight_hh, bias_ih=None, bias_hh=None, h0=None, s0=None,
                 truncate: bool = True, activation: str = "tanh", batch_sizes=None,
                 cells_per_block: int = 1, gate_feedback: bool = False):
    return _dynamo_layer(input, [(weight_ih, weight_hh, bias_ih, bias_hh)], h0, s0, activation,
                         batch_sizes, cells_per_block, gate_feedback)


def _lstm_bidirectional_dynamo(input, weight_ih, weight_hh, bias_ih, bias_hh, weight_ih_reverse,
                               weight_hh_reverse, bias_ih_reverse, bias_hh_reverse, h0=None,
                               s0=None, truncate: bool = True, activation: str = "tanh",
                               batch_sizes=None, cells_per_block: int = 1,
                               gate_feedback: bool = False):
    directions = [(weight_ih, weight_hh, bias_ih, bias_hh),
                  (weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse)]
    return _dynamo_layer(input, directions, h0, s0, activation, batch_sizes, cells_per_block,
                         gate_feedback)


translation_table = {torch.ops.lstm1997.lstm.default: _lstm_dynamo,
                     torch.ops.lstm1997.lstm_bidirectional.default: _lstm_bidirectional_dynamo}
"""``custom_translation_table`` for ``torch.onnx.export`` (the default, torch.export-based
exporter): ``torch.onnx.export(model, args, path, custom_translation_table=translation_table)``."""


def _register_with_the_default_exporter() -> bool:
    """Adds the translations to the default exporter's own table, so that torch.onnx.export finds
    them with no argument, as it finds torch.nn.LSTM's. That table is private to PyTorch (its
    own translations of higher-order ops register there the same way): where it is missing or
    onnxscript is not installed, nothing is added and translation_table is the way."""
    try:
        from torch.onnx._internal.exporter._torchlib._torchlib_registry import onnx_impl
    except ImportError:
        return False
    for target, function in translation_table.items():
        onnx_impl(target, no_compile=True)(function)
    return True


registered_with_the_default_exporter = _register_with_the_default_exporter()
"""Whether ``torch.onnx.export`` finds the translations without ``custom_translation_table``."""


# --- the TorchScript-based exporter (dynamo=False) -----------------------------------------------

class _TorchScriptGraph(_Graph):
    _SUFFIX = {int: "i", float: "f", str: "s"}

    def __init__(self, g, dtype):
        self._g = g
        self._dtype = dtype  # the layer's numpy dtype: the constants' too

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
        return self._g.op("Constant", value_t=torch.from_numpy(np.array(array, order="C")))

    def constant_like(self, array, like):
        # Typed at once rather than CastLike: the exporter's constant folding then folds the
        # weight rewriting into the initializers.
        return self.constant(np.asarray(array, dtype=self._dtype))

    def scan(self, states, widths, step_input, step_width, like, body, reverse):
        # The TorchScript-based exporter writes a node's block as a graph attribute for Loop and
        # If only: the steps go as a Loop that gathers its step of the input.
        jit_utils = _torchscript_exporter_module("jit_utils")
        utils = _torchscript_exporter_module("utils")
        g = self._g
        zero = self.constant(np.array([0], dtype=np.int64))

        def reversed_steps(value):  # value[::-1] along the steps
            return self.op("Slice", value, self.constant(np.array([-1], dtype=np.int64)),
                           self.constant(np.array([-(2 ** 63) + 1], dtype=np.int64)), zero,
                           self.constant(np.array([-1], dtype=np.int64)))

        if reverse:
            step_input = reversed_steps(step_input)
        steps = g.op("Squeeze", g.op("Shape", step_input, start_i=0, end_i=1), zero)
        keep_going = self.constant(np.array(True))
        outputs, (context,), _ = jit_utils.add_op_with_blocks(
            g, "Loop", steps, keep_going, *states, outputs=len(states) + 1, n_blocks=1)
        iteration = utils._add_input_to_block(context.block)
        condition = utils._add_input_to_block(context.block)
        state_inputs = [utils._add_input_to_block(context.block) for _ in states]
        step_graph = _TorchScriptGraph(context, self._dtype)
        step = step_graph.op("Gather", step_input, iteration, axis=0)
        utils._add_output_to_block(context.block, step_graph.op("Identity", condition))
        for value in body(step_graph, state_inputs, step):
            utils._add_output_to_block(context.block, value)
        outputs = list(outputs)
        if reverse:  # the loop's outputs come last step first: back to the input's order
            outputs[-1] = reversed_steps(outputs[-1])
        return outputs


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


_NUMPY_DTYPES = {"Float": np.float32, "Double": np.float64, "Half": np.float16}


def _torchscript_layer(g, input, directions, h0, s0, activation, batch_sizes, cells_per_block,
                       gate_feedback):
    """The TorchScript exporter's call of _layer: the options read as constants, absent
    optional tensors as None. Packed input: the exporter traces pack_padded_sequence as a
    placeholder whose outputs are the padded input and the lengths; the lengths reach the op as
    batch_sizes, and its pass (as for torch.nn.LSTM) takes the placeholder away once an LSTM
    with sequence_lens reads it."""
    symbolic_helper = _torchscript_exporter_module("symbolic_helper")

    def optional(value):
        return None if symbolic_helper._is_none(value) else value

    activation = symbolic_helper._maybe_get_const(activation, "s")
    _check_options(activation, None)
    dtype = input.type().scalarType()
    if dtype not in _NUMPY_DTYPES:
        _refuse(f"input: expected float32, float64 or float16, got {dtype}")
    weight_shapes = (_static_shape(directions[0][0]), _static_shape(directions[0][1]))
    if None in weight_shapes:
        _refuse("the weights' shapes are unknown to the exporter")
    directions = [(w_ih, w_hh, optional(b_ih), optional(b_hh))
                  for w_ih, w_hh, b_ih, b_hh in directions]
    return _layer(_TorchScriptGraph(g, _NUMPY_DTYPES[dtype]), input, directions, optional(h0),
                  optional(s0), activation,
                  int(symbolic_helper._maybe_get_const(cells_per_block, "i")),
                  bool(symbolic_helper._maybe_get_const(gate_feedback, "b")), weight_shapes,
                  dtype == "Float", optional(batch_sizes))


def _lstm_torchscript(g, input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, truncate,
                      activation, batch_sizes, cells_per_block, gate_feedback):
    return _torchscript_layer(g, input, [(weight_ih, weight_hh, bias_ih, bias_hh)], h0, s0,
                              activation, batch_sizes, cells_per_block, gate_feedback)


def _lstm_bidirectional_torchscript(g, input, weight_ih, weight_hh, bias_ih, bias_hh,
                                    weight_ih_reverse, weight_hh_reverse, bias_ih_reverse,
                                    bias_hh_reverse, h0, s0, truncate, activation, batch_sizes,
                                    cells_per_block, gate_feedback):
    directions = [(weight_ih, weight_hh, bias_ih, bias_hh),
                  (weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse)]
    return _torchscript_layer(g, input, directions, h0, s0, activation, batch_sizes,
                              cells_per_block, gate_feedback)


# Shape with start and end (the step-by-step form) came with opset 15.
torch.onnx.register_custom_op_symbolic("lstm1997::lstm", _lstm_torchscript, 15)
torch.onnx.register_custom_op_symbolic("lstm1997::lstm_bidirectional",
                                       _lstm_bidirectional_torchscript, 15)
