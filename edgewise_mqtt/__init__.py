"""The MQTT link both the agent and the controller (and the simulator) talk through: paho-mqtt
driven by one asyncio loop, with reconnects, keep-alive and bounded queues (:mod:`.link`).

Shared rather than owned by either side: it carries no Edgewise message types (those are in
:mod:`edgewise_wire`), only topics and bytes, and it ships to the device with the agent.
"""

from edgewise_mqtt.link import BrokerAddress, MqttLink

__all__ = ["BrokerAddress", "MqttLink"]
