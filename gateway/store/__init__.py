"""SQLite persistence: one connection, versioned migrations, small query modules per table."""

from gateway.store.db import Store, Tx, open_store

__all__ = ["Store", "Tx", "open_store"]
