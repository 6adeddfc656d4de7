"""The command line (rank 7): `collab serve`, `db`, `snapshots`, `token`."""
