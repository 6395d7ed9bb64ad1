"""Daemon lifecycle: the ingest thread and the running agent."""
