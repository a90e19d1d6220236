"""Online learning with the 1997 LSTM: the paper's truncated gradient computed forward in time.

Under the paper's truncation, a weight influences later steps only through the cell state, whose
derivatives with respect to the input-gate and cell-input weights are running sums ("traces").
With them the gradient of a loss at step t is known at step t: weights can be updated at every
step, and memory does not grow with the length of the stream. See torch.ops.lstm1997.lstm_online_step_
(the traces updated in place) and lstm_online_traces / lstm_online_grads (the same, functional).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _C
from .modules import _LayerModule


class _Stream:
    """What an OnlineLSTM carries from call to call: the state (h, s), the traces, the last chunk
    and whether its terms are still to join the traces. A plain object: nn.Module's __setattr__,
    which every attribute of the module itself goes through, costs more than a small step's
    arithmetic (benchmarks/bench.py --online)."""

    def __init__(self) -> None:
        self.hidden: Optional[Tensor] = None
        self.cell_state: Optional[Tensor] = None
        self.traces: Optional[Tuple[Tensor, Tensor, Tensor]] = None
        # The last chunk (input, h0, output, squashed_state, gates, shape returned) of a 3-D call;
        # after a one-step call, None and `step` holds that step.
        self.chunk = None
        # The one-step path's buffers, which _lstm_online_forward_ fills in place: (step_input,
        # previous, squashed_state, gates), and the last step's output.
        self.step_buffers: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]] = None
        self.step_output: Optional[Tensor] = None
        self.step_returned: Optional[Tensor] = None  # the step's output as returned: (B, H), or
        # a chunk of one's
        # Whether the last chunk's terms are still to be added to the traces: backward() and
        # update() add them in the same pass over the traces that computes the gradient; the next
        # forward() adds them when no gradient came.
        self.pending = False
        # The previous stream's traces, which _start zeroes and takes over when the new stream's
        # sizes, dtype and device are theirs: a new 12 MB of traces (B = 16, I = 128, H = 256)
        # costs thousands of page faults at its first touch, several times a step's arithmetic
        # (benchmarks/README.md, "traces kept across reset()").
        self.spare_traces: Optional[Tuple[Tensor, Tensor, Tensor]] = None
        # The one-step path bound to this stream (lstm1997._C._OnlineStepper: references to
        # hidden, cell_state, step_buffers, traces and the last step's outputs, so that a step's
        # calls pass its input and the parameters only); None until the next one-step call binds
        # one, e.g. after a chunk call, which replaces hidden and cell_state.
        self.stepper = None

    def __getstate__(self):
        # A copy (deepcopy, pickle) binds a stepper to its own tensors at its next one-step call.
        state = self.__dict__.copy()
        state["stepper"] = None
        return state

    def last_chunk(self):
        """The last call as a chunk (input, h0, output, squashed_state, gates, shape returned), as
        the chunk ops take it."""
        if self.chunk is not None:
            return self.chunk
        step_input, previous, squashed_state, gates = self.step_buffers
        output = self.step_output
        return (step_input.unsqueeze(0), previous,
                output if output.dim() == 3 else output.unsqueeze(0),
                squashed_state.unsqueeze(0), gates.unsqueeze(0), self.step_returned.shape)


class OnlineLSTM(_LayerModule):
    r"""One layer of the 1997 LSTM that learns from a stream, step by step or chunk by chunk.

    ``forward(x)`` advances the cell over ``x`` (one step ``(B, I)`` or a chunk ``(T, B, I)``;
    ``(B, T, I)`` with ``batch_first``) from the state left by the previous call and returns the
    outputs as a leaf tensor that requires grad: compute a loss from it, take its gradient, and
    pass that to ``backward(grad_output)``, which adds the gradient of the loss with respect to
    every weight to ``.grad`` (so any ``torch.optim`` optimizer can step), or to
    ``update(grad_output, lr)``, which applies the paper's plain gradient step at once.

    The gradient is the paper's truncated one, including what the weights did through the cell
    state in earlier chunks: over a sequence, the sum of the per-chunk gradients equals the
    gradient of ``lstm1997.LSTM(truncate=True)`` on the sum of the losses. Weights updated during a
    sequence make this the paper's online approximation, as in its experiments.

    One ``backward()`` or ``update()`` per ``forward()``: it adds the chunk's terms to the traces
    in the same pass over them that computes the gradient (``gradients()`` computes it without
    that, any number of times before). State (h, s) and traces persist across calls until
    ``reset()`` (call it between sequences). A one-step call on CPU (float or double) runs the
    paper's recipe at the cost of a step: one op advances the state and one applies the gradient,
    on buffers kept between calls (``_lstm_online_forward_`` and ``_lstm_online_update_``).
    Memory: the traces, ``B * 2H * (I + R + 1)`` values (R = ``recurrent_size``: H, or K + H + K
    with ``gate_feedback``), plus one chunk; nothing grows with the stream. Options
    ``activation``, ``cells_per_block`` and ``gate_feedback`` as in ``lstm1997.LSTM``. Parameters are named as in ``lstm1997.LSTM(num_layers=1)`` (``weight_ih_l0``, ...), so
    state dicts move between the two.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 batch_first: bool = False, *, activation: str = "tanh",
                 cells_per_block: int = 1, gate_feedback: bool = False, device=None,
                 dtype=None) -> None:
        super().__init__()
        # Always the paper's truncated gradient: the traces compute it forward in time.
        self._set_options("OnlineLSTM", input_size, hidden_size, bias, True, activation,
                          cells_per_block, gate_feedback)
        self.batch_first = batch_first
        self._add_layer_parameters("_l0", input_size, {"device": device, "dtype": dtype})
        self.reset_parameters()
        self.reset()

    def _layer_options(self):
        return {"activation": self.activation, "cells_per_block": self.cells_per_block,
                "gate_feedback": self.gate_feedback}

    def reset(self) -> None:
        """Forgets the state and the traces: the next call starts a new sequence from zeros."""
        previous = self.__dict__.get("_stream")
        self._stream = _Stream()
        if previous is not None:
            self._stream.spare_traces = previous.traces or previous.spare_traces

    @property
    def hidden(self) -> Optional[Tensor]:
        """A copy of h after the last call (B, R): the cell outputs, or with gate_feedback the
        recurrent state [input gates | cell outputs | output gates]; None before the first call.
        (The module's own state changes in place.)"""
        hidden = self._stream.hidden
        return None if hidden is None else hidden.clone()

    @property
    def cell_state(self) -> Optional[Tensor]:
        """A copy of s after the last call (B, H); None before the first call."""
        cell_state = self._stream.cell_state
        return None if cell_state is None else cell_state.clone()

    @property
    def traces(self) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
        """A copy of (trace_ih (B, 2H, I), trace_hh (B, 2H, R), trace_bias (B, 2H)) after every
        chunk seen, contiguous; None before the first. (The module's own traces change in
        place.)"""
        stream = self._stream
        if stream.traces is None:
            return None
        if not stream.pending:
            return tuple(t.clone(memory_format=torch.contiguous_format) for t in stream.traces)
        chunk, h0, output, _, gates, _ = stream.last_chunk()
        with torch.no_grad():
            traces = torch.ops.lstm1997.lstm_online_traces(chunk, h0, output, gates,
                                                           *stream.traces, **self._layer_options())
        return tuple(t.contiguous() for t in traces)

    def _start(self, batch: int, like: Tensor) -> None:
        H, I, R = self.hidden_size, self.input_size, self.recurrent_size
        stream = self._stream
        stream.hidden = like.new_zeros(batch, R)
        stream.cell_state = like.new_zeros(batch, H)
        spare, stream.spare_traces = stream.spare_traces, None
        if (spare is not None and spare[0].shape == (batch, 2 * H, I)
                and spare[1].shape == (batch, 2 * H, R) and spare[0].dtype == like.dtype
                and spare[0].device == like.device):
            for trace in spare:
                trace.zero_()
            stream.traces = spare
        elif like.is_cpu:
            # (B, 2H, width) views of traces laid out gate row by gate row: the CPU update's pass
            # reads one gate row of every batch row in turn, which then lie next to each other
            # (benchmarks/README.md, "Issue #20, ninth session"). The ops take any layout; other
            # devices, which run ATen's ops on the traces, keep them contiguous.
            stream.traces = (like.new_zeros(2 * H, batch, I).transpose(0, 1),
                             like.new_zeros(2 * H, batch, R).transpose(0, 1),
                             like.new_zeros(2 * H, batch).t())
        else:
            stream.traces = (like.new_zeros(batch, 2 * H, I), like.new_zeros(batch, 2 * H, R),
                             like.new_zeros(batch, 2 * H))

    def _online_step(self, grad_output: Optional[Tensor], advance: bool):
        """torch.ops.lstm1997.lstm_online_step_ on the last chunk: its gradients (with
        grad_output), and with `advance` its terms added to the traces in place."""
        stream = self._stream
        chunk, h0, output, squashed_state, gates, _ = stream.last_chunk()
        if grad_output is not None and grad_output.dim() == 2:  # a one-step call's
            grad_output = grad_output.unsqueeze(0)
        with torch.no_grad():
            result = torch.ops.lstm1997.lstm_online_step_(
                *stream.traces, grad_output, chunk, self.weight_ih_l0, self.weight_hh_l0, h0,
                output, squashed_state, gates, advance=advance, **self._layer_options())
        if advance:
            stream.pending = False
        return result

    def _advance_traces(self) -> None:
        stream = self._stream
        if not stream.pending:
            return
        if stream.chunk is None:  # a one-step call's: its terms join the traces, no gradient
            (stream.stepper or self._bind_stepper()).advance()
            stream.pending = False
        else:
            self._online_step(None, advance=True)

    def _prepare_step(self, input: Tensor):
        """For a step (_C._is_online_step): what the stream lacks before the one-step op, its
        start, a stepper bound to it, the previous call's terms in the traces. Returns the
        stepper."""
        stream = self._stream
        stepper = stream.stepper
        batch = input.shape[0 if input.dim() == 3 and self.batch_first else -2]
        if stepper is None:
            if stream.hidden is None:
                self._start(batch, input)
            stepper = self._bind_stepper()
        if stream.pending:  # the previous call's terms: no backward() added them
            self._check_batch(batch)  # before the traces change
            self._advance_traces()
        return stepper

    def _bind_stepper(self):
        """The one-step path bound to the (started) stream, its step buffers made where there are
        none: the stream's dtype, which the op checks each input against."""
        stream = self._stream
        hidden = stream.hidden
        if stream.step_buffers is None:
            batch, H = hidden.shape[0], self.hidden_size
            stream.step_buffers = (
                hidden.new_empty(batch, self.input_size),
                hidden.new_empty(batch, self.recurrent_size), hidden.new_empty(batch, H),
                hidden.new_empty(batch, 3 * H))
        stream.stepper = _C._OnlineStepper(
            hidden, stream.cell_state, *stream.step_buffers, *stream.traces, self.activation,
            self.cells_per_block, self.gate_feedback, stream.step_output, stream.step_returned)
        return stream.stepper

    def _check_batch(self, batch: int) -> None:
        # (The one-step path's stepper, python_module.cpp, checks the same with the same words.)
        expected = self._stream.hidden.shape[0]
        if expected != batch:
            raise RuntimeError(f"OnlineLSTM: input: expected batch size {expected} "
                               f"(the stream's, until reset()), got {batch}")

    def forward(self, input: Tensor) -> Tensor:
        stream = self._stream
        stepper = stream.stepper
        if stepper is None or stream.pending:
            stepper = (self._prepare_step(input)
                       if _C._is_online_step(input, self.batch_first) else None)
        # A step by _lstm_online_forward_, in place on the stream's state and buffers. The
        # paper's recipe's usual call, a step after the last step's backward(), comes straight
        # here: the stepper takes the input if it is a step (_C._is_online_step), and returns
        # None for any other input (a chunk, another device's, another dim), which the chunk path
        # takes. (At the paper's sizes each tensor property read or method call in Python costs a
        # few percent of the step: benchmarks/README.md, "Issue #20, ninth session".)
        if stepper is not None:
            parameters = self._parameters
            # The op checks every argument (shapes, dtypes, devices) and names the one at fault.
            result = stepper.forward(
                input, parameters["weight_ih_l0"], parameters["weight_hh_l0"],
                parameters.get("bias_ih_l0"), parameters.get("bias_hh_l0"), self.batch_first)
            if result is not None:
                stream.step_output, returned = result
                stream.step_returned = returned
                stream.chunk = None
                stream.pending = True
                return returned
        if input.dim() not in (2, 3):
            raise ValueError(f"OnlineLSTM: input: expected a 3-D chunk (seq_len, batch, "
                             f"input_size) or a 2-D step (batch, input_size), got "
                             f"{input.dim()}-D with shape {list(input.shape)}")
        step = input.dim() == 2
        chunk = input.unsqueeze(0) if step else (input.transpose(0, 1) if self.batch_first else input)
        batch = chunk.shape[1]
        stream = self._stream
        if stream.hidden is None:
            self._start(batch, chunk)
        else:
            self._check_batch(batch)
        with torch.no_grad():
            output, h_n, s_n, squashed_state, gates = torch.ops.lstm1997._lstm_forward(
                chunk, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0,
                stream.hidden, stream.cell_state, **self._layer_options())
        self._advance_traces()  # the previous chunk's terms, if no backward() added them
        # What backward() needs of this chunk; the next forward replaces it. The input is copied:
        # its terms may join the traces only at the next call, when a caller may have refilled it.
        result = output[0] if step else (output.transpose(0, 1) if self.batch_first else output)
        stream.chunk = (chunk.clone(), stream.hidden, output, squashed_state, gates, result.shape)
        stream.step_output = None
        stream.pending = True
        stream.hidden, stream.cell_state = h_n, s_n
        stream.stepper = None  # bound to the state just replaced
        return result.detach().requires_grad_(torch.is_grad_enabled())

    def _check_last_call(self) -> None:
        """That a forward() call came since reset() and its terms are not in the traces yet."""
        stream = self._stream
        if stream.chunk is None and stream.step_output is None:
            raise RuntimeError("OnlineLSTM: backward: expected a forward() call first (since the "
                               "last reset())")
        if not stream.pending:
            raise RuntimeError("OnlineLSTM: backward: the traces already hold the last chunk (one "
                               "backward() or update() per forward(); gradients() any number of "
                               "times before it)")

    def _chunk_grad(self, grad_output: Tensor) -> Tensor:
        """grad_output as the (T, B, H) gradient of the last chunk's outputs, checked."""
        self._check_last_call()
        stream = self._stream
        if stream.chunk is None:  # a one-step call
            shape = grad_output.shape
            if shape != stream.step_returned.shape:
                raise RuntimeError(f"OnlineLSTM: grad_output: expected shape "
                                   f"{list(stream.step_returned.shape)} (that of the last "
                                   f"output), got {list(shape)}")
            step_output = stream.step_output
            if len(shape) != step_output.dim():  # a batch-first chunk of one
                grad_output = grad_output.view(step_output.shape)
            dtype = step_output.dtype
            return grad_output if grad_output.dtype is dtype else grad_output.to(dtype)
        output, returned_shape = stream.chunk[2], stream.chunk[5]
        if grad_output.shape != returned_shape:
            raise RuntimeError(f"OnlineLSTM: grad_output: expected shape {list(returned_shape)} "
                               f"(that of the last output), got {list(grad_output.shape)}")
        grad = grad_output.reshape(output.shape) if len(returned_shape) == 2 else grad_output
        if self.batch_first and len(returned_shape) == 3:
            grad = grad.transpose(0, 1)
        return grad.to(output.dtype)

    def gradients(self, grad_output: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The truncated gradient of a loss on the last chunk's outputs, given ``grad_output``
        (its gradient with respect to them, shaped like them): ``(grad_weight_ih, grad_weight_hh,
        grad_bias)``; ``grad_bias`` is the gradient of each of ``bias_ih`` and ``bias_hh``."""
        return self._online_step(self._chunk_grad(grad_output), advance=False)

    def _parameters_and_gradients(self, grad_output: Tensor):
        """(parameter, gradient) for every parameter that requires grad (a frozen one, e.g. a
        bias_hh held at zero so that the bias is learned once, is left alone); the chunk's terms
        join the traces in the same pass."""
        grad_weight_ih, grad_weight_hh, grad_bias = self._online_step(
            self._chunk_grad(grad_output), advance=True)
        pairs = [(self.weight_ih_l0, grad_weight_ih), (self.weight_hh_l0, grad_weight_hh)]
        if self.bias:
            pairs += [(self.bias_ih_l0, grad_bias), (self.bias_hh_l0, grad_bias)]
        return [(p, g) for p, g in pairs if p.requires_grad]

    def _step_update(self, grad_output: Tensor, alpha: float, into_grad: bool) -> None:
        """backward() (into_grad) or update() after a one-step call: the binding checks
        grad_output against the returned output and adds alpha times the gradient to each
        parameter that requires grad, or to its .grad (python_module.cpp)."""
        stream = self._stream
        stepper = stream.stepper
        if stepper is None or not stream.pending:
            self._check_last_call()  # raises unless a step's terms are pending
            stepper = stepper or self._bind_stepper()  # e.g. in a copy of the module
        parameters = self._parameters
        stepper.update(
            grad_output, parameters["weight_ih_l0"], parameters["weight_hh_l0"],
            parameters.get("bias_ih_l0"), parameters.get("bias_hh_l0"), alpha, into_grad)
        stream.pending = False

    def backward(self, grad_output: Tensor) -> None:
        """Adds the gradient of the loss on the last chunk to every parameter's ``.grad``."""
        if self._stream.chunk is None:  # a one-step call (or none: _check_last_call says so)
            return self._step_update(grad_output, 1.0, True)
        accumulated, added = [], []
        for parameter, grad in self._parameters_and_gradients(grad_output):
            if parameter.grad is None:
                parameter.grad = grad.clone()
            else:
                accumulated.append(parameter.grad)
                added.append(grad)
        if accumulated:
            torch._foreach_add_(accumulated, added)

    def update(self, grad_output: Tensor, lr: float) -> None:
        """The paper's weight update: one plain gradient step of size ``lr`` on the loss of the
        last chunk, applied at once (``.grad`` is left alone)."""
        if self._stream.chunk is None:  # a one-step call (or none: _check_last_call says so)
            return self._step_update(grad_output, -lr, False)
        pairs = self._parameters_and_gradients(grad_output)
        with torch.no_grad():
            # parameter - lr * gradient for each, as sub_(gradient, alpha=lr) computes it.
            torch._foreach_add_([p for p, _ in pairs], [g for _, g in pairs], alpha=-lr)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        s += f", activation={self.activation!r}"
        if self.cells_per_block != 1:
            s += f", cells_per_block={self.cells_per_block}"
        if self.gate_feedback:
            s += ", gate_feedback=True"
        return s
