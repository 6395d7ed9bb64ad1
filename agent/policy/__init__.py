"""Decisions: policies, the safety layer that has the last word on them, and signed commands."""
