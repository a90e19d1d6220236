"""Functional form of the 1997 LSTM layer."""
from typing import Optional, Tuple

import torch
from torch import Tensor

ACTIVATIONS = ("tanh", "paper")


def lstm(
    input: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Optional[Tensor] = None,
    bias_hh: Optional[Tensor] = None,
    h0: Optional[Tensor] = None,
    s0: Optional[Tensor] = None,
    *,
    truncate: bool = True,
    activation: str = "tanh",
    batch_sizes: Optional[Tensor] = None,
    cells_per_block: int = 1,
    gate_feedback: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Runs one layer of the 1997 LSTM over a whole sequence.

    With ``net_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh`` split into the input gate ``a``,
    cell input ``z`` and output gate ``c`` (in that order along the ``3H`` rows)::

        s_t = s_{t-1} + sigmoid(a_t) * g(z_t)      (the constant error carousel)
        h_t = sigmoid(c_t) * h(s_t)

    Args:
        input: ``(T, B, I)``.
        weight_ih: ``(3H, I)``; weight_hh: ``(3H, H)``; bias_ih, bias_hh: ``(3H,)`` or None.
        h0, s0: initial hidden and cell state, ``(B, H)`` (h0 ``(B, K + H + K)`` with
            gate_feedback); zero when None.
        truncate: True (default) for the paper's truncated gradient (no error flows back through
            the recurrent weights into h_{t-1}; only the cell state carries error back in time);
            False for exact backpropagation through time.
        activation: ``"tanh"`` (g = h = tanh) or ``"paper"`` (g = 4 sigmoid - 2, h = 2 sigmoid - 1).
        batch_sizes: for packed input (the ``data`` ``(N, I)`` and ``batch_sizes`` of a
            ``PackedSequence`` with sorted sequences): each sequence stops at its own length, and
            h_n, s_n hold its state at its last step. h0 and s0 are then required.
        cells_per_block: S > 1 makes memory cell blocks (the paper's section 4): cells
            ``[kS, (k+1)S)`` share block k's input gate and output gate. The weights then have
            ``K + H + K`` rows (``K = H / S`` input gates, ``H`` cell inputs, ``K`` output gates)
            instead of ``3H``.
        gate_feedback: the paper's network (its section 4): every cell and gate also sees the
            gate outputs of t-1. The recurrent input is then ``r_{t-1} = [input gates (K) |
            h_{t-1} (H) | output gates (K)]``, ``weight_hh`` is ``(K + H + K, H + 2K)``, and h0
            and h_n are that whole recurrent state, ``(B, K + H + K)``, so that a sequence split
            into calls continues exactly (pass h_n back as h0). The cell outputs of h_n are
            ``h_n[:, K:K + H]``; the truncated gradient cuts every recurrent connection, the gate
            outputs' included (the paper's appendix A.1).

    Returns:
        ``(output, h_n, s_n)``: output ``(T, B, H)`` holds h_t for every step; s_n ``(B, H)``;
        h_n ``(B, H)``, or ``(B, K + H + K)`` with gate_feedback.
    """
    return torch.ops.lstm1997.lstm(
        input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, truncate=truncate,
        activation=activation, batch_sizes=batch_sizes, cells_per_block=cells_per_block,
        gate_feedback=gate_feedback,
    )


def recurrent_split(state: Tensor, cells_per_block: int = 1) -> Tuple[Tensor, Tensor, Tensor]:
    """Splits a recurrent state of gate feedback, ``(..., K + H + K)`` (an h0 or h_n of a layer
    with ``gate_feedback=True``), into its input gates ``(..., K)``, cell outputs ``(..., H)`` and
    output gates ``(..., K)``, as views."""
    width = state.shape[-1]
    if cells_per_block < 1 or width % (cells_per_block + 2):
        raise ValueError(f"recurrent_split: state: expected a last dimension K + H + K = "
                         f"K * (cells_per_block + 2) with cells_per_block = {cells_per_block}, "
                         f"got {width}")
    blocks = width // (cells_per_block + 2)
    input_gates, hidden, output_gates = state.split(
        [blocks, blocks * cells_per_block, blocks], dim=-1)
    return input_gates, hidden, output_gates
