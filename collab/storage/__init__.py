"""Durable storage (rank 2).

The store seam, its SQL implementation, the writer, migrations, leases.
"""
