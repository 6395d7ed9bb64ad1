"""The local web dashboard (``web:`` in the configuration): Starlette on uvicorn, on a thread
and event loop of its own, reading the agent's in-memory state through the status interfaces and
its database through a read-only connection of its own, so it never holds up ingest."""
