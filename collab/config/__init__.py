"""Configuration (rank 0): the settings, each defined once with its documentation."""

from collab.config.settings import Settings, client_token, definitions

__all__ = ["Settings", "client_token", "definitions"]
