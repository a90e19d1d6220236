"""nn.Module front end of the 1997 LSTM."""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from . import convert
from .functional import ACTIVATIONS


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"LSTM: {name}: expected a positive int, got {value!r}")


class LSTM(nn.Module):
    r"""The original LSTM layer (Hochreiter & Schmidhuber, 1997): input and output gates, no forget
    gate, and a cell state that is a constant error carousel.

    A drop-in for ``torch.nn.LSTM``: ``forward(input, hx=None)`` returns
    ``output, (h_n, s_n)`` as ``torch.nn.LSTM`` returns ``output, (h_n, c_n)``, with ``s`` the cell
    state. Parameters are named as in ``torch.nn.LSTM`` with three gate blocks (input gate, cell
    input, output gate) instead of four: ``weight_ih_l0`` (3H, I), ``weight_hh_l0`` (3H, H),
    ``bias_ih_l0`` and ``bias_hh_l0`` (3H), initialised uniform in ±1/sqrt(H).

    Args:
        input_size, hidden_size, bias: as in torch.nn.LSTM.
        truncate: True (default) trains with the paper's truncated gradient; False with exact BPTT.
        activation: "tanh" (default) or "paper" (g = 4 sigmoid - 2, h = 2 sigmoid - 1).

    Shapes: input ``(T, B, I)`` or unbatched ``(T, I)``; ``hx = (h0, s0)`` each ``(1, B, H)``
    (``(1, H)`` unbatched); h_n and s_n likewise.
    """

    __constants__ = ["input_size", "hidden_size", "bias", "truncate", "activation"]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        truncate: bool = True,
        activation: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        _check_positive_int(input_size, "input_size")
        _check_positive_int(hidden_size, "hidden_size")
        if activation not in ACTIVATIONS:
            raise ValueError(f"LSTM: activation: expected one of {ACTIVATIONS}, got {activation!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bool(bias)
        self.truncate = bool(truncate)
        self.activation = activation
        factory = {"device": device, "dtype": dtype}
        gate_rows = 3 * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(gate_rows, input_size, **factory))
        self.weight_hh_l0 = nn.Parameter(torch.empty(gate_rows, hidden_size, **factory))
        if self.bias:
            self.bias_ih_l0 = nn.Parameter(torch.empty(gate_rows, **factory))
            self.bias_hh_l0 = nn.Parameter(torch.empty(gate_rows, **factory))
        else:
            self.register_parameter("bias_ih_l0", None)
            self.register_parameter("bias_hh_l0", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def forward(
        self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        if input.dim() not in (2, 3):
            raise ValueError(
                "LSTM: input: expected a 3-D (seq_len, batch, input_size) or 2-D "
                f"(seq_len, input_size) tensor, got {input.dim()}-D"
            )
        batched = input.dim() == 3
        if not batched:
            input = input.unsqueeze(1)
        h0: Optional[Tensor] = None
        s0: Optional[Tensor] = None
        if hx is not None:
            expected = [1, input.size(1), self.hidden_size] if batched else [1, self.hidden_size]
            layout = "(num_layers, batch, hidden_size)" if batched else "(num_layers, hidden_size)"
            h0, s0 = hx
            if list(h0.shape) != expected:
                raise RuntimeError(f"LSTM: hx (h0): expected shape {expected} {layout}, got {list(h0.shape)}")
            if list(s0.shape) != expected:
                raise RuntimeError(f"LSTM: hx (s0): expected shape {expected} {layout}, got {list(s0.shape)}")
            h0 = h0.reshape(input.size(1), self.hidden_size)
            s0 = s0.reshape(input.size(1), self.hidden_size)
        output, h_n, s_n = torch.ops.lstm1997.lstm(
            input,
            self.weight_ih_l0,
            self.weight_hh_l0,
            self.bias_ih_l0,
            self.bias_hh_l0,
            h0,
            s0,
            self.truncate,
            self.activation,
        )
        if not batched:
            return output.squeeze(1), (h_n, s_n)
        return output, (h_n.unsqueeze(0), s_n.unsqueeze(0))

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        return text + f", truncate={self.truncate}, activation={self.activation!r}"

    def to_torch_lstm(self) -> nn.LSTM:
        """A torch.nn.LSTM (forget gate pinned open) computing the same function; "tanh" only."""
        return convert.to_torch_lstm(self)

    @classmethod
    def from_torch_lstm(cls, module: nn.LSTM, **options) -> "LSTM":
        """Builds an LSTM from a torch.nn.LSTM, dropping its forget gate (warns unless pinned
        open). ``options`` (truncate, activation) pass to the constructor."""
        return convert.from_torch_lstm(cls, module, **options)
