"""parse -> validate -> convert -> filter -> features, as pure functions and small state objects."""
