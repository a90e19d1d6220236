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
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Runs one layer of the 1997 LSTM over a whole sequence.

    With ``net_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh`` split into the input gate ``a``,
    cell input ``z`` and output gate ``c`` (in that order along the ``3H`` rows)::

        s_t = s_{t-1} + sigmoid(a_t) * g(z_t)      (the constant error carousel)
        h_t = sigmoid(c_t) * h(s_t)

    Args:
        input: ``(T, B, I)``.
        weight_ih: ``(3H, I)``; weight_hh: ``(3H, H)``; bias_ih, bias_hh: ``(3H,)`` or None.
        h0, s0: initial hidden and cell state, ``(B, H)``; zero when None.
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

    Returns:
        ``(output, h_n, s_n)``: output ``(T, B, H)`` holds h_t for every step; h_n, s_n ``(B, H)``.
    """
    return torch.ops.lstm1997.lstm(
        input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, truncate=truncate,
        activation=activation, batch_sizes=batch_sizes, cells_per_block=cells_per_block,
    )
