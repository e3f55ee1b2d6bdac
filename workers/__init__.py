"""How one candidate is trained and measured: datasets, the training engine, latency."""
