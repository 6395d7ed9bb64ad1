"""``native.trim``: giving malloc's free memory back after a model load is harmless to call."""

from agent.inference import native


def test_trim_can_be_called_any_time() -> None:
    native.trim()
    native.trim()
