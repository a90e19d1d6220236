"""The original Long Short-Term Memory of Hochreiter & Schmidhuber (1997) as a PyTorch operator.

Importing the package loads the compiled op library, which registers ``torch.ops.lstm1997.*``.
"""
import torch  # noqa: F401  (the op library links against torch: load it first)

from . import _C  # noqa: F401  (runs the TORCH_LIBRARY registrations)
from . import _transforms  # noqa: F401  (lstm1997::lstm under torch.func transforms)
from .functional import lstm, recurrent_split
from .modules import LSTM, LSTMCell, set_gate_biases
from .online import OnlineLSTM

__all__ = ["LSTM", "LSTMCell", "OnlineLSTM", "lstm", "recurrent_split", "set_gate_biases"]
__version__ = "0.1.0"
