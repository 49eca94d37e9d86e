"""Networks: recurrent cells, sequence layers, forecasters and heads."""
