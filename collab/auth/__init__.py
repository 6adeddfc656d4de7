"""Access (rank 2): who may read or edit what; token verification, keys and issuing."""
