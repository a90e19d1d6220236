"""nn.Module front ends of the 1997 LSTM: LSTM (a drop-in for torch.nn.LSTM) and LSTMCell.

Layers, directions, dropout, batch_first and packed sequences live here, around the one-layer,
one-direction op torch.ops.lstm1997.lstm, as PyTorch's own RNN code builds them around a layer.
"""
import math
import numbers
import warnings
from typing import List, Optional, Tuple, overload

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence

from . import convert
from .functional import ACTIVATIONS


def _check_positive_int(value, name, owner):
    """TypeError for a value that is not an int, ValueError for one that is not positive (the
    exception types of torch.nn.LSTM for the same mistakes)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name}: expected a positive int, got {type(value).__name__} "
                        f"{value!r}")
    if value <= 0:
        raise ValueError(f"{owner}: {name}: expected a positive int, got {value!r}")


def _check_bool(value, name, owner):
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name}: expected a bool, got {type(value).__name__} {value!r}")


def _check_activation(activation, owner):
    if activation not in ACTIVATIONS:
        raise ValueError(f"{owner}: activation: expected one of {ACTIVATIONS}, got {activation!r}")


def _check_state_tuple(hx: Tuple[Tensor, Tensor], owner: str, names: str,
                       gate_feedback: bool) -> None:
    if len(hx) != 2:
        where = (": with gate_feedback the gate outputs are part of h (recurrent_size features)"
                 if gate_feedback else "")
        raise ValueError(f"{owner}: hx: expected a tuple of 2 tensors {names}, got {len(hx)}"
                         f"{where}")


def _reset_uniform(module: nn.Module, hidden_size: int) -> None:
    """torch.nn.LSTM's initialisation: every parameter uniform in ±1/sqrt(hidden_size)."""
    bound = 1.0 / math.sqrt(hidden_size)
    for parameter in module.parameters():
        nn.init.uniform_(parameter, -bound, bound)


def _gate_rows(hidden_size: int, cells_per_block, owner: str) -> int:
    """Rows of the weight matrices: K input gates, H cell inputs, K output gates (K = H / S)."""
    _check_positive_int(cells_per_block, "cells_per_block", owner)
    if hidden_size % cells_per_block:
        raise ValueError(f"{owner}: cells_per_block: expected a divisor of hidden_size "
                         f"({hidden_size}), got {cells_per_block}")
    return hidden_size + 2 * (hidden_size // cells_per_block)


class _LayerModule(nn.Module):
    """What LSTM, LSTMCell and OnlineLSTM share: the options of the layer op and their checks, the
    four parameters of a layer (per layer and direction, named with a suffix), their
    initialisation, and the options' part of the repr.

    ``recurrent_size`` is the width of the recurrent state h (the columns of ``weight_hh``):
    ``hidden_size``, or ``K + H + K`` with gate feedback, where h holds the outputs of the input
    gates, the cells and the output gates (``lstm1997.recurrent_split`` takes it apart)."""

    def _set_options(self, owner: str, input_size: int, hidden_size: int, bias: bool,
                     truncate: bool, activation: str, cells_per_block: int,
                     gate_feedback: bool) -> None:
        _check_positive_int(input_size, "input_size", owner)
        _check_positive_int(hidden_size, "hidden_size", owner)
        rows = _gate_rows(hidden_size, cells_per_block, owner)
        _check_activation(activation, owner)
        for name, value in (("bias", bias), ("truncate", truncate),
                            ("gate_feedback", gate_feedback)):
            _check_bool(value, name, owner)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.truncate = truncate
        self.activation = activation
        self.cells_per_block = cells_per_block
        self.gate_feedback = gate_feedback
        self.recurrent_size = rows if gate_feedback else hidden_size

    def _add_layer_parameters(self, suffix: str, layer_input_size: int, factory) -> List[str]:
        """Registers weight_ih, weight_hh, bias_ih and bias_hh (None without bias) + suffix;
        returns their names."""
        rows = _gate_rows(self.hidden_size, self.cells_per_block, type(self).__name__)
        shapes = {
            "weight_ih" + suffix: (rows, layer_input_size),
            "weight_hh" + suffix: (rows, self.recurrent_size),
            "bias_ih" + suffix: (rows,),
            "bias_hh" + suffix: (rows,),
        }
        for name, shape in shapes.items():
            if name.startswith("bias") and not self.bias:
                self.register_parameter(name, None)
            else:
                setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
        return list(shapes)

    def reset_parameters(self) -> None:
        _reset_uniform(self, self.hidden_size)

    def _options_repr(self) -> str:
        text = f", truncate={self.truncate}, activation={self.activation!r}"
        if self.cells_per_block != 1:
            text += f", cells_per_block={self.cells_per_block}"
        if self.gate_feedback:
            text += ", gate_feedback=True"
        return text


def set_gate_biases(module: nn.Module, input_gate=None, output_gate=None) -> nn.Module:
    """The paper's remedies (its section 4), as an initialisation of any lstm1997 module (LSTM,
    LSTMCell, OnlineLSTM) with biases: ``input_gate`` against internal state drift (a negative
    bias keeps the input gates mostly shut, so that the cell state, which nothing resets, grows
    slowly on continual input), ``output_gate`` against abuse (a negative bias keeps a cell from
    acting as a constant early in training). Each is a number for every block, or a sequence of
    one number per block (e.g. ``[-1, -2, -3]``, the paper's staggered biases), applied to every
    layer and direction; None leaves those gates alone. The net bias of a gate is
    ``bias_ih + bias_hh``: the value goes to ``bias_ih`` and the gate's ``bias_hh`` rows are set to
    zero. Returns the module."""
    if not isinstance(module, _LayerModule):
        raise TypeError(f"set_gate_biases: module: expected an lstm1997 LSTM, LSTMCell or "
                        f"OnlineLSTM, got {type(module).__name__}")
    if not module.bias:
        raise ValueError("set_gate_biases: module: expected a module with biases (bias=True)")
    H = module.hidden_size
    K = H // module.cells_per_block
    values = {}
    for name, value, first in (("input_gate", input_gate, 0), ("output_gate", output_gate, K + H)):
        if value is None:
            continue
        per_block = torch.as_tensor(value, dtype=torch.float64).flatten()
        if per_block.numel() == 1:
            per_block = per_block.expand(K)
        if per_block.numel() != K:
            raise ValueError(f"set_gate_biases: {name}: expected a number or one per block "
                             f"({K}), got {value!r}")
        values[first] = per_block
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.startswith("bias_"):
                for first, per_block in values.items():
                    rows = parameter[first:first + K]
                    rows.copy_(per_block if name.startswith("bias_ih") else torch.zeros(K))
    return module


def _exporting_onnx() -> bool:
    """Whether an ONNX exporter is running the module (never in TorchScript)."""
    if not torch.jit.is_scripting():  # (TorchScript compiles no more of this than the test)
        return torch.onnx.is_in_onnx_export()
    return False


def _packed_reverse_index(batch_sizes: Tensor) -> Tensor:
    """The permutation of packed rows that reverses every sequence within its own length.

    Packed rows are ordered by step, then by sequence; reversing each sequence keeps the lengths,
    so the result is again a valid packed layout with the same batch_sizes, and the permutation is
    its own inverse.
    """
    steps = batch_sizes.numel()
    offsets = torch.cumsum(batch_sizes, 0) - batch_sizes
    step_of_row = torch.repeat_interleave(torch.arange(steps), batch_sizes)
    sequence_of_row = torch.arange(step_of_row.numel()) - offsets[step_of_row]
    lengths = (batch_sizes.unsqueeze(0) > torch.arange(int(batch_sizes[0])).unsqueeze(1)).sum(1)
    mirrored_step = lengths[sequence_of_row] - 1 - step_of_row
    return offsets[mirrored_step] + sequence_of_row


class LSTM(_LayerModule):
    r"""The original LSTM (Hochreiter & Schmidhuber, 1997): input and output gates, no forget gate,
    and a cell state that is a constant error carousel. A drop-in for ``torch.nn.LSTM``.

    Arguments, inputs and outputs are those of ``torch.nn.LSTM``: ``forward(input, hx=None)``
    returns ``output, (h_n, s_n)`` as ``torch.nn.LSTM`` returns ``output, (h_n, c_n)``, with ``s``
    the cell state; input may be ``(T, B, I)``, ``(B, T, I)`` with ``batch_first``, unbatched
    ``(T, I)``, or a ``PackedSequence``; ``hx = (h0, s0)`` and ``h_n, s_n`` have shape
    ``(num_layers * num_directions, B, H)``. Parameters are named as in ``torch.nn.LSTM``
    (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, with ``_reverse``
    for the reverse direction) with three gate blocks (input gate, cell input, output gate) instead
    of four, and are initialised uniform in ±1/sqrt(H). ``proj_size`` is not supported.

    Args (beyond torch.nn.LSTM's):
        truncate: True (default) trains with the paper's truncated gradient; False with exact BPTT.
        activation: "tanh" (default) or "paper" (g = 4 sigmoid - 2, h = 2 sigmoid - 1).
        cells_per_block: memory cell blocks (the paper's section 4): S cells share one input gate
            and one output gate; the gate rows of every weight and bias are then H + 2H/S (K input
            gates, H cell inputs, K output gates, K = H/S). Default 1: 3H rows.
        gate_feedback: the paper's network (its section 4): every cell and gate also sees the
            outputs of all gates at t-1, not only the cells'. Each layer's recurrent state h is
            then its whole recurrent input ``[input gates (K) | cell outputs (H) | output gates
            (K)]``: ``weight_hh_l{k}`` is ``(K + H + K, K + H + K)`` and h0, h_n have
            ``recurrent_size = K + H + K`` features, so that ``hx = (h_n, s_n)`` passed back
            continues a sequence exactly. ``output`` holds the cell outputs only; the cells' part
            of h_n is ``lstm1997.recurrent_split(h_n, cells_per_block)[1]``. Default False.
    """

    __constants__ = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                     "bidirectional", "truncate", "activation", "cells_per_block",
                     "gate_feedback", "recurrent_size"]
    _flat_weights: List[Optional[Tensor]]
    _flat_weights_names: List[str]
    __jit_unused_properties__ = ["all_weights"]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        truncate: bool = True,
        activation: str = "tanh",
        cells_per_block: int = 1,
        gate_feedback: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self._set_options("LSTM", input_size, hidden_size, bias, truncate, activation,
                          cells_per_block, gate_feedback)
        _check_positive_int(num_layers, "num_layers", "LSTM")
        _check_bool(batch_first, "batch_first", "LSTM")
        _check_bool(bidirectional, "bidirectional", "LSTM")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
            raise ValueError(f"LSTM: dropout: expected a probability in [0, 1], got {dropout!r}")
        if proj_size != 0:
            raise ValueError(
                f"LSTM: proj_size: expected 0, got {proj_size!r}: projections (LSTMP) are not part "
                "of the 1997 LSTM and are not supported"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=2,
            )
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0
        factory = {"device": device, "dtype": dtype}
        directions = 2 if self.bidirectional else 1
        # Four slots per (layer, direction): weight_ih, weight_hh, bias_ih, bias_hh (None if absent).
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else hidden_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                self._flat_weights_names += self._add_layer_parameters(suffix, layer_input_size,
                                                                       factory)
        self._init_flat_weights()
        self.reset_parameters()

    def _init_flat_weights(self) -> None:
        # A weight may be missing for a while: the weight-drop pattern deletes the Parameter and
        # sets a plain tensor before each forward (which _run reads through the module).
        self._flat_weights = [getattr(self, name) if hasattr(self, name) else None
                              for name in self._flat_weights_names]

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name in self.__dict__.get("_flat_weights_names", ()):
            self._flat_weights[self._flat_weights_names.index(name)] = value

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        # Conversions may replace the Parameters: keep the list the forward reads in step.
        self._init_flat_weights()
        return result

    def flatten_parameters(self) -> None:
        """Does nothing: the op takes the weights as they are (torch.nn.LSTM needs this for cuDNN)."""

    @property
    def all_weights(self) -> List[List[nn.Parameter]]:
        return [
            [w for w in self._flat_weights[k : k + 4] if w is not None]
            for k in range(0, len(self._flat_weights), 4)
        ]

    def _reverse(self, sequence: Tensor, reverse_index: Optional[Tensor]) -> Tensor:
        if reverse_index is None:
            return sequence.flip(0)
        return sequence.index_select(0, reverse_index)

    def _run_layer(
        self,
        layer: int,
        directions: int,
        flat_weights: List[Optional[Tensor]],
        layer_input: Tensor,
        batch_sizes: Optional[Tensor],
        reverse_index: Optional[Tensor],
        h0: Optional[Tensor],
        s0: Optional[Tensor],
        final_hidden: List[Tensor],
        final_state: List[Tensor],
    ) -> Tensor:
        """One layer, direction by direction (one direction, or packed input): its output; its
        states, (1, B, width) each, are appended to final_hidden and final_state."""
        outputs: List[Tensor] = []
        for direction in range(directions):
            k = layer * directions + direction
            weight_ih = flat_weights[4 * k]
            weight_hh = flat_weights[4 * k + 1]
            assert weight_ih is not None and weight_hh is not None
            sequence = layer_input if direction == 0 else self._reverse(layer_input, reverse_index)
            output, h_n, s_n = torch.ops.lstm1997.lstm(
                sequence,
                weight_ih,
                weight_hh,
                flat_weights[4 * k + 2],
                flat_weights[4 * k + 3],
                None if h0 is None else h0[k],
                None if s0 is None else s0[k],
                truncate=self.truncate,
                activation=self.activation,
                batch_sizes=batch_sizes,
                cells_per_block=self.cells_per_block,
                gate_feedback=self.gate_feedback,
            )
            outputs.append(output if direction == 0 else self._reverse(output, reverse_index))
            final_hidden.append(h_n.unsqueeze(0))
            final_state.append(s_n.unsqueeze(0))
        return outputs[0] if directions == 1 else torch.cat(outputs, -1)

    def _run(
        self,
        input: Tensor,
        batch_sizes: Optional[Tensor],
        reverse_index: Optional[Tensor],
        h0: Optional[Tensor],
        s0: Optional[Tensor],
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """The stack over (T, B, I), or packed (N, I) with batch_sizes; h0, s0 of shape
        (num_layers * num_directions, B, H) or None."""
        directions = 2 if self.bidirectional else 1
        flat_weights = self._flat_weights
        if not torch.jit.is_scripting():
            # Read the parameters through the module: torch.export, torch.func.functional_call and
            # the like substitute them there, not in this list.
            flat_weights = [getattr(self, name) for name in self._flat_weights_names]
        final_hidden: List[Tensor] = []
        final_state: List[Tensor] = []
        layer_input = input
        for layer in range(self.num_layers):
            if directions == 2 and reverse_index is None:
                # Both directions in one op (dense input, or packed while exported to ONNX): one
                # node where graphs are captured, which the ONNX translation writes as one
                # bidirectional LSTM.
                k = 2 * layer
                weight_ih = flat_weights[4 * k]
                weight_hh = flat_weights[4 * k + 1]
                weight_ih_reverse = flat_weights[4 * k + 4]
                weight_hh_reverse = flat_weights[4 * k + 5]
                assert weight_ih is not None and weight_hh is not None
                assert weight_ih_reverse is not None and weight_hh_reverse is not None
                layer_input, h_n, s_n = torch.ops.lstm1997.lstm_bidirectional(
                    layer_input,
                    weight_ih,
                    weight_hh,
                    flat_weights[4 * k + 2],
                    flat_weights[4 * k + 3],
                    weight_ih_reverse,
                    weight_hh_reverse,
                    flat_weights[4 * k + 6],
                    flat_weights[4 * k + 7],
                    None if h0 is None else h0[k:k + 2],
                    None if s0 is None else s0[k:k + 2],
                    truncate=self.truncate,
                    activation=self.activation,
                    batch_sizes=batch_sizes,
                    cells_per_block=self.cells_per_block,
                    gate_feedback=self.gate_feedback,
                )
                final_hidden.append(h_n)
                final_state.append(s_n)
            else:
                layer_input = self._run_layer(layer, directions, flat_weights, layer_input,
                                              batch_sizes, reverse_index, h0, s0, final_hidden,
                                              final_state)
            if self.dropout > 0 and self.training and layer + 1 < self.num_layers:
                layer_input = F.dropout(layer_input, self.dropout, True)
        if len(final_hidden) == 1:  # one layer, one op: its states as they are (cat would copy)
            return layer_input, final_hidden[0], final_state[0]
        return layer_input, torch.cat(final_hidden), torch.cat(final_state)

    def _check_hx(self, hx: Tuple[Tensor, Tensor], leading: List[int], layout: str) -> None:
        """h0 and s0 must be ``leading + [width]``; ``layout`` names the leading dimensions."""
        _check_state_tuple(hx, "LSTM", "(h0, s0)", self.gate_feedback)
        for name, state, width, meaning in (
            ("h0", hx[0], self.recurrent_size,
             "recurrent_size (K + H + K with gate_feedback)" if self.gate_feedback
             else "hidden_size"),
            ("s0", hx[1], self.hidden_size, "hidden_size"),
        ):
            expected = leading + [width]
            if list(state.shape) != expected:
                raise RuntimeError(f"LSTM: hx ({name}): expected shape {expected} "
                                   f"({layout}, {meaning}), got {list(state.shape)}")

    # Two overloads, as torch.nn.LSTM declares them: TorchScript compiles forward once per input
    # type, so scripted callers pass a tensor or a PackedSequence through the normal call.
    @overload
    @torch._jit_internal._overload_method
    def forward(  # noqa: F811
        self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        pass

    @overload
    @torch._jit_internal._overload_method
    def forward(  # noqa: F811
        self, input: PackedSequence, hx: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[PackedSequence, Tuple[Tensor, Tensor]]:
        pass

    def forward(self, input, hx=None):  # noqa: F811
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if not torch.jit.is_scripting():
            if hx is None and self.num_layers == 1 and not self.bidirectional:
                return self._forward_one_op(input)
        return self._forward_tensor(input, hx)

    @torch.jit.unused
    def _forward_one_op(self, input: Tensor) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """_forward_tensor's result for one layer in one direction and no hx, with the op called
        at once: at the paper's sizes the general path's Python, which serves any stack of layers,
        cost about as much as the op's call (benchmarks/README.md, "the module's call")."""
        if input.dim() != 3:
            return self._forward_tensor(input, None)
        parameters = self._parameters
        names = self._flat_weights_names
        # Read through the module (functional_call substitutes them there); a weight that is not
        # a Parameter (the weight-drop pattern) is an attribute of its own.
        weight_ih, weight_hh, bias_ih, bias_hh = [
            parameters[name] if name in parameters else getattr(self, name, None)
            for name in names]
        self._check_input(input, weight_ih)
        if self.batch_first:
            input = input.transpose(0, 1)
        output, h_n, s_n = torch.ops.lstm1997.lstm(
            input, weight_ih, weight_hh, bias_ih, bias_hh, None, None, truncate=self.truncate,
            activation=self.activation, cells_per_block=self.cells_per_block,
            gate_feedback=self.gate_feedback)
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n.unsqueeze(0), s_n.unsqueeze(0))

    @torch.jit.export
    def forward_packed(
        self, input: PackedSequence, hx: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[PackedSequence, Tuple[Tensor, Tensor]]:
        """forward for a PackedSequence (an alias, kept for callers written before forward took
        both in TorchScript)."""
        return self._forward_packed(input, hx)

    def _check_input(self, input: Tensor, weight: Optional[Tensor] = None) -> None:
        """The mistakes torch.nn.LSTM catches in its module, with its exception types: a dtype
        other than the weights' (ValueError; autocast casts them itself) and a feature size other
        than input_size (RuntimeError, blaming the input rather than weight_ih). ``weight``:
        weight_ih_l0 where the caller has read it."""
        if not torch.jit.is_scripting():
            if weight is None:
                weight = getattr(self, self._flat_weights_names[0], None)
            if (weight is not None and not torch._C._is_any_autocast_enabled()
                    and input.dtype != weight.dtype):
                raise ValueError(f"LSTM: input: expected dtype {weight.dtype} (the dtype of the "
                                 f"weights), got {input.dtype}: convert the input, or the module "
                                 f"(.to(dtype))")
        # (Not while tracing, where sizes are traced values: the op checks the shapes there too.)
        if not torch.jit.is_tracing() and input.size(-1) != self.input_size:
            raise RuntimeError(f"LSTM: input: input.size(-1) must be equal to input_size. "
                               f"Expected {self.input_size}, got {input.size(-1)}")

    def _forward_packed(
        self, input: PackedSequence, hx: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[PackedSequence, Tuple[Tensor, Tensor]]:
        if _exporting_onnx():
            self._check_packed_onnx_export()
        data, batch_sizes, sorted_indices, unsorted_indices = input
        self._check_input(data)
        stacked = self.num_layers * (2 if self.bidirectional else 1)
        batch = int(batch_sizes[0])
        if hx is None:
            h0, s0 = self._zero_states(data, batch_sizes, stacked, batch)
        else:
            self._check_hx(hx, [stacked, batch], "num_layers * num_directions, batch")
            h0, s0 = hx
            if sorted_indices is not None:
                h0 = h0.index_select(1, sorted_indices)
                s0 = s0.index_select(1, sorted_indices)
        # Without reverse_index, lstm_bidirectional reverses the sequences itself: one op per
        # layer, which the ONNX exporter turns into a bidirectional LSTM with sequence_lens.
        reverse_index: Optional[Tensor] = None
        if self.bidirectional and not _exporting_onnx():
            reverse_index = _packed_reverse_index(batch_sizes).to(data.device)
        output, h_n, s_n = self._run(data, batch_sizes, reverse_index, h0, s0)
        if unsorted_indices is not None:
            h_n = h_n.index_select(1, unsorted_indices)
            s_n = s_n.index_select(1, unsorted_indices)
        return PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices), (h_n, s_n)

    @torch.jit.unused
    def _check_packed_onnx_export(self) -> None:
        """A PackedSequence exports through the TorchScript-based exporter, as torch.nn.LSTM's
        does (ONNX's LSTM with sequence_lens); torch.export cannot capture packing (its sizes are
        data)."""
        if torch.compiler.is_exporting():
            raise ValueError("LSTM: input: a PackedSequence cannot be exported by the default "
                             "ONNX exporter (torch.export cannot capture packing): export with "
                             "dynamo=False, or a model that takes padded input")

    def _zero_states(self, data: Tensor, batch_sizes: Tensor, stacked: int,
                     batch: int) -> Tuple[Tensor, Tensor]:
        """Zero h0 and s0 for packed input. While torch.jit.trace records the model for the
        TorchScript-based ONNX exporter, the batch size stays a graph value (batch_sizes[0], which
        the exporter rewrites when it turns packing into ONNX's sequence_lens), and data is read
        by the layer alone: the exporter's pass needs both."""
        if not torch.jit.is_scripting():
            if torch.onnx.is_in_onnx_export():
                size = batch_sizes[0]
                return (torch.zeros(stacked, size, self.recurrent_size, dtype=data.dtype,
                                    device=data.device),
                        torch.zeros(stacked, size, self.hidden_size, dtype=data.dtype,
                                    device=data.device))
        return (torch.zeros(stacked, batch, self.recurrent_size, dtype=data.dtype,
                            device=data.device),
                torch.zeros(stacked, batch, self.hidden_size, dtype=data.dtype, device=data.device))

    def _forward_tensor(
        self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]]
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        if input.dim() not in (2, 3):
            raise ValueError(
                "LSTM: input: expected a 3-D (seq_len, batch, input_size) or 2-D "
                f"(seq_len, input_size) tensor, got {input.dim()}-D"
            )
        self._check_input(input)
        stacked = self.num_layers * (2 if self.bidirectional else 1)
        batched = input.dim() == 3
        if not batched:
            input = input.unsqueeze(1)
        elif self.batch_first:
            input = input.transpose(0, 1)
        h0: Optional[Tensor] = None
        s0: Optional[Tensor] = None
        if hx is not None:
            if batched:
                self._check_hx(hx, [stacked, input.size(1)], "num_layers * num_directions, batch")
                h0, s0 = hx
            else:
                self._check_hx(hx, [stacked], "num_layers * num_directions for unbatched input")
                h0, s0 = hx[0].unsqueeze(1), hx[1].unsqueeze(1)
        output, h_n, s_n = self._run(input, None, None, h0, s0)
        if not batched:
            return output.squeeze(1), (h_n.squeeze(1), s_n.squeeze(1))
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n, s_n)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout != 0:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text + self._options_repr()

    def to_torch_lstm(self) -> nn.LSTM:
        """A torch.nn.LSTM (forget gates pinned open) computing the same function; "tanh" only."""
        return convert.to_torch_lstm(self)

    @classmethod
    def from_torch_lstm(cls, module: nn.LSTM, **options) -> "LSTM":
        """Builds an LSTM from a torch.nn.LSTM of any configuration but proj_size, dropping its
        forget gates (warns unless they were pinned open). ``options`` (truncate, activation) pass
        to the constructor."""
        return convert.from_torch_lstm(cls, module, **options)


class LSTMCell(_LayerModule):
    r"""One time step of the 1997 LSTM, like ``torch.nn.LSTMCell``: ``forward(input, hx=None)``
    returns ``(h, s)``. Input ``(B, I)`` or ``(I,)``; ``hx = (h, s)`` each ``(B, H)`` or ``(H,)``.
    Parameters ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``, ``bias_hh`` (3H).
    Options ``truncate``, ``activation``, ``cells_per_block`` and ``gate_feedback`` as in
    ``LSTM``; with ``gate_feedback`` h is the recurrent state ``(B, K + H + K)`` (input gates, cell
    outputs, output gates: ``lstm1997.recurrent_split``).

    With ``truncate=True`` (the paper's rule) no error flows from the step's net inputs back into
    the previous h; the previous cell state s still receives its error in full.
    """

    __constants__ = ["input_size", "hidden_size", "bias", "truncate", "activation", "cells_per_block",
                     "gate_feedback", "recurrent_size"]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        truncate: bool = True,
        activation: str = "tanh",
        cells_per_block: int = 1,
        gate_feedback: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self._set_options("LSTMCell", input_size, hidden_size, bias, truncate, activation,
                          cells_per_block, gate_feedback)
        self._add_layer_parameters("", input_size, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def forward(self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Tensor, Tensor]:
        if input.dim() not in (1, 2):
            raise ValueError(
                f"LSTMCell: input: expected a 2-D (batch, input_size) or 1-D (input_size) tensor, "
                f"got {input.dim()}-D"
            )
        # torch.nn.LSTMCell's exception types: RuntimeError for the feature size and the dtype
        if not torch.jit.is_tracing() and input.size(-1) != self.input_size:
            raise RuntimeError(f"LSTMCell: input has inconsistent input_size: got "
                               f"{input.size(-1)} expected {self.input_size}")
        if not torch.jit.is_scripting():
            if not torch._C._is_any_autocast_enabled() and input.dtype != self.weight_ih.dtype:
                raise RuntimeError(f"LSTMCell: input: expected dtype {self.weight_ih.dtype} (the "
                                   f"dtype of the weights), got {input.dtype}")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
        h0: Optional[Tensor] = None
        s0: Optional[Tensor] = None
        if hx is not None:
            _check_state_tuple(hx, "LSTMCell", "(h, s)", self.gate_feedback)
            for name, state in (("h", hx[0]), ("s", hx[1])):
                if state.dim() not in (1, 2):
                    raise ValueError(f"LSTMCell: hx ({name}): expected a 1-D or 2-D tensor, got "
                                     f"{state.dim()}-D")
            leading: List[int] = []
            if batched:
                leading = [input.size(0)]
            for name, state, width in (("h", hx[0], self.recurrent_size),
                                       ("s", hx[1], self.hidden_size)):
                expected = leading + [width]
                if list(state.shape) != expected:
                    raise RuntimeError(
                        f"LSTMCell: hx ({name}): expected shape {expected}, got {list(state.shape)}"
                    )
            h0, s0 = hx
            if not batched:
                h0, s0 = h0.unsqueeze(0), s0.unsqueeze(0)
        _, h, s = torch.ops.lstm1997.lstm(
            input.unsqueeze(0), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, h0, s0,
            truncate=self.truncate, activation=self.activation,
            cells_per_block=self.cells_per_block, gate_feedback=self.gate_feedback,
        )
        if not batched:
            return h.squeeze(0), s.squeeze(0)
        return h, s

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        return text + self._options_repr()

    def to_torch_lstm_cell(self) -> nn.LSTMCell:
        """A torch.nn.LSTMCell (forget gate pinned open) computing the same step; "tanh" only."""
        return convert.to_torch_lstm_cell(self)

    @classmethod
    def from_torch_lstm_cell(cls, module: nn.LSTMCell, **options) -> "LSTMCell":
        """Builds an LSTMCell from a torch.nn.LSTMCell, dropping its forget gate (warns unless it
        was pinned open)."""
        return convert.from_torch_lstm_cell(cls, module, **options)
