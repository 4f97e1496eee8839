"""Channels: Matrix and email, each a codec (pure) and a transport (I/O)."""
