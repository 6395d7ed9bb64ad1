"""edge-agent: an MQTT-driven IoT edge agent."""

__version__ = "0.1.0"
