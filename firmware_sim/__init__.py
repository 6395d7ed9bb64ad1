"""Simulated sensor and actuator firmware that speaks the edge-agent wire contract."""
