"""MQTT edge: the only importer of paho."""

from agent.mqtt.client import Message, MqttClient, Will

__all__ = ["Message", "MqttClient", "Will"]
