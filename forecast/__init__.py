"""forecast: spatio-temporal forecasting with the recurrent family (RNN, LSTM, GRU, ConvLSTM)."""

__version__ = "0.1.0"
