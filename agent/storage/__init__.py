"""The only writer of SQL: readings, migrations, retention."""

from agent.storage.db import Store, StoredReading

__all__ = ["Store", "StoredReading"]
