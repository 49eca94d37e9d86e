"""Recurrent cells: one time step each, split into an input projection and a recurrent step."""

from forecast.models.cells.conv_gru import ConvGRUCell
from forecast.models.cells.conv_lstm import ConvLSTMCell

__all__ = ["ConvGRUCell", "ConvLSTMCell"]
