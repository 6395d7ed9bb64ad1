"""The only writer of SQL: readings, migrations, retention."""

from agent.storage.db import OutboxRow, Store, StoredReading

__all__ = ["OutboxRow", "Store", "StoredReading"]
