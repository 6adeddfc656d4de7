"""collab: a Yjs-compatible collaborative document server."""

__version__ = "0.1.0"
