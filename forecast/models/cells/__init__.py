"""Recurrent cells: one time step each, split into an input projection and a recurrent step."""

from forecast.models.cells.conv_gru import ConvGRUCell
from forecast.models.cells.conv_lstm import ConvLSTMCell
from forecast.models.cells.gru import GRUCell
from forecast.models.cells.lstm import LSTMCell
from forecast.models.cells.rnn import RNNCell

__all__ = ["ConvGRUCell", "ConvLSTMCell", "GRUCell", "LSTMCell", "RNNCell"]
