"""Live documents (rank 3).

A room's Doc, peers, presence and fan-out; the registry that loads and unloads
rooms.
"""
