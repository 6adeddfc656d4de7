"""The y-protocols wire format (rank 1): pure functions, bytes in, typed messages out; no I/O."""
