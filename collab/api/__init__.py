"""The HTTP and WebSocket edge (rank 6).

The app factory, the connection lifecycle, REST routes, web pages.
"""
