"""The generated Mosquitto configuration, on a real Mosquitto: who may connect, and which
topics each identity may use.

MQTT 3.1.1 brokers drop an unauthorized PUBLISH silently (the client still gets its PUBACK), so
"refused" is checked at a privileged subscriber: after the forbidden messages the same client
publishes an allowed one, and the broker keeps one client's messages in order, so once the
allowed one arrives the forbidden ones would have arrived before it."""

from __future__ import annotations

import time

import pytest

from edgewise_wire.topics import DeviceChannel, chunk_topic, device_topic
from tests.harness.secure_fleet import Client, SecureFleet

pytestmark = [pytest.mark.broker]


def _cert(fleet: SecureFleet, device_id: str) -> tuple[str, str]:
    bundle = fleet.enrolled.get(device_id) or fleet.enroll(device_id)
    return str(bundle.directory / "device.crt"), str(bundle.directory / "device.key")


def _controller(fleet: SecureFleet) -> Client:
    client = Client(fleet, cert=fleet.controller_credential())
    assert client.connect(), client.error
    return client


def _device(fleet: SecureFleet, device_id: str, **kwargs: object) -> Client:
    client = Client(fleet, client_id=f"ew-agent-{device_id}", cert=_cert(fleet, device_id),
                    **kwargs)  # type: ignore[arg-type]
    assert client.connect(), f"{device_id}: {client.error}"
    return client


def test_device_cannot_publish_on_another_devices_topics(fleet: SecureFleet) -> None:
    watcher = _controller(fleet)
    watcher.subscribe("ew/v1/#")
    mallory = _device(fleet, "sec-mallory")
    try:
        victim = "sec-victim"
        for channel in DeviceChannel:  # every channel of another device, both directions
            mallory.publish(device_topic(victim, channel), b"forged " + channel.value.encode())
        mallory.publish(chunk_topic("a" * 64, 0), b"forged chunk")  # chunks: read-only
        mallory.publish("ew/v1/anything/else", b"forged")
        mallory.publish(device_topic("sec-mallory", DeviceChannel.DESIRED), b"own desired")
        marker = device_topic("sec-mallory", DeviceChannel.REPORTED)
        mallory.publish(marker, b"marker")
        watcher.expect(marker, b"marker")
        forged = [(t, p) for t, p in watcher.received if t != marker]
        assert forged == [], f"the broker passed on messages a device may not send: {forged}"
    finally:
        mallory.close()
        watcher.close()


def test_device_cannot_read_another_devices_desired_state(fleet: SecureFleet) -> None:
    controller = _controller(fleet)
    victim = _device(fleet, "sec-reader-victim")
    eve = _device(fleet, "sec-eve")
    try:
        secret = b'{"secret": "for the victim only"}'
        controller.publish(device_topic("sec-reader-victim", DeviceChannel.DESIRED), secret,
                           retain=True)
        controller.publish(device_topic("sec-reader-victim", DeviceChannel.ACK), b"ack")
        # the victim can read its own (positive control)
        victim.subscribe(device_topic("sec-reader-victim", DeviceChannel.DESIRED))
        victim.expect(device_topic("sec-reader-victim", DeviceChannel.DESIRED), secret)

        for topic in (device_topic("sec-reader-victim", DeviceChannel.DESIRED),
                      "ew/v1/dev/+/desired", "ew/v1/dev/sec-reader-victim/#", "ew/v1/#", "#"):
            eve.subscribe(topic)
        own = device_topic("sec-eve", DeviceChannel.DESIRED)
        eve.subscribe(own)
        controller.publish(device_topic("sec-reader-victim", DeviceChannel.DESIRED), secret,
                           retain=True)
        controller.publish(device_topic("sec-reader-victim", DeviceChannel.ACK), b"ack")
        controller.publish(own, b"for eve", retain=True)
        eve.expect(own, b"for eve")
        leaked = [(t, p) for t, p in eve.received if "sec-reader-victim" in t or p == secret]
        assert leaked == [], f"a device read another device's messages: {leaked}"
        # what every device may read: artifact chunks
        eve.subscribe(chunk_topic("b" * 64, 0).rsplit("/", 1)[0] + "/+")
        controller.publish(chunk_topic("b" * 64, 0), b"chunk bytes")
        eve.expect(chunk_topic("b" * 64, 0), b"chunk bytes")
    finally:
        controller.publish(device_topic("sec-reader-victim", DeviceChannel.DESIRED), b"",
                           retain=True)
        for client in (controller, victim, eve):
            client.close()


def test_controller_identity_reads_and_writes_every_device_topic(fleet: SecureFleet) -> None:
    controller = _controller(fleet)
    device = _device(fleet, "sec-ctl-check")
    try:
        controller.subscribe("ew/v1/dev/+/telemetry")
        device.subscribe(device_topic("sec-ctl-check", DeviceChannel.ACK))
        device.publish(device_topic("sec-ctl-check", DeviceChannel.TELEMETRY), b"batch")
        controller.expect(device_topic("sec-ctl-check", DeviceChannel.TELEMETRY), b"batch")
        controller.publish(device_topic("sec-ctl-check", DeviceChannel.ACK), b"ack")
        device.expect(device_topic("sec-ctl-check", DeviceChannel.ACK), b"ack")
    finally:
        device.close()
        controller.close()


def test_connections_without_a_valid_credential_are_refused(fleet: SecureFleet,
                                                            tmp_path_factory:
                                                            pytest.TempPathFactory) -> None:
    from controller.security.pki import FleetCA

    # no client certificate at all
    anonymous = Client(fleet)
    assert not anonymous.connect()
    # a certificate from another CA, for a device id that exists in this fleet
    fleet.enroll("sec-known")
    other = FleetCA(tmp_path_factory.mktemp("other-ca"))
    other.init()
    forged = other.issue_client_cert("sec-known")
    forged_dir = tmp_path_factory.mktemp("forged")
    (forged_dir / "c.crt").write_bytes(forged.cert_pem)
    (forged_dir / "c.key").write_bytes(forged.key_pem)
    impostor = Client(fleet, cert=(str(forged_dir / "c.crt"), str(forged_dir / "c.key")))
    assert not impostor.connect(), "a certificate of another CA was accepted"
    # plain MQTT (no TLS) on the TLS port
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    plain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ew-test-plain")
    plain.connect("127.0.0.1", fleet.cert_port)
    for _ in range(3):
        if plain.loop(timeout=1.0) != mqtt.MQTT_ERR_SUCCESS:
            break
    assert not plain.is_connected(), "a plain-text client got a connection"
    # a valid certificate connects (the control)
    good = _device(fleet, "sec-known")
    good.close()
    log = fleet.log_text()
    assert "peer did not return a certificate" in log
    assert "certificate verify failed" in log


def test_revoked_certificate_is_refused_and_its_open_connection_cut_off(
        fleet: SecureFleet) -> None:
    watcher = _controller(fleet)
    watcher.subscribe("ew/v1/dev/+/reported")
    live = _device(fleet, "sec-revoked")
    try:
        live.publish(device_topic("sec-revoked", DeviceChannel.REPORTED), b"before")
        watcher.expect(device_topic("sec-revoked", DeviceChannel.REPORTED), b"before")
        again = _device(fleet, "sec-bystander")  # another device stays unaffected

        fleet.revoke("sec-revoked")

        # a new connection with the revoked certificate: refused (CRL)
        retry = Client(fleet, cert=_cert(fleet, "sec-revoked"))
        assert not retry.connect(), "a revoked certificate was accepted after the reload"
        # the connection opened before the revocation may still be open, but the ACL denies
        # the revoked identity everything
        if live.connected:
            live.publish(device_topic("sec-revoked", DeviceChannel.REPORTED), b"after")
        again.publish(device_topic("sec-bystander", DeviceChannel.REPORTED), b"marker")
        watcher.expect(device_topic("sec-bystander", DeviceChannel.REPORTED), b"marker")
        after = [p for t, p in watcher.received if t.endswith("sec-revoked/reported")]
        assert after == [b"before"], after
        again.close()
    finally:
        live.close()
        watcher.close()


def test_devices_cannot_take_over_each_others_sessions(fleet: SecureFleet) -> None:
    """With use_username_as_clientid the client id is the certificate's CN: a device that
    connects with another device's client id does not disconnect that device."""
    watcher = _controller(fleet)
    watcher.subscribe("ew/v1/dev/+/presence")
    victim = _device(fleet, "sec-session-victim")
    attacker = Client(fleet, client_id="ew-agent-sec-session-victim",
                      cert=_cert(fleet, "sec-session-attacker"))
    try:
        assert attacker.connect(), attacker.error
        victim.publish(device_topic("sec-session-victim", DeviceChannel.PRESENCE), b"still here")
        watcher.expect(device_topic("sec-session-victim", DeviceChannel.PRESENCE), b"still here")
        assert victim.connected
        assert "sec-session-victim already connected" not in \
            fleet.log_text()
    finally:
        for client in (attacker, victim, watcher):
            client.close()


def test_password_devices_connect_and_revocation_disconnects_them(fleet: SecureFleet) -> None:
    import tomllib

    bundle = fleet.enroll("sec-pw", mode="password")
    config = tomllib.loads((bundle.directory / "agent.toml").read_text())
    password = config["broker"]["password"]
    assert config["broker"]["port"] == fleet.password_port
    assert "device.key" not in {p.name for p in bundle.directory.iterdir()}

    wrong = Client(fleet, username="sec-pw", password="not-the-password",
                   port=fleet.password_port)
    assert not wrong.connect()
    cert_device_without_password = Client(fleet, username="sec-known-pw-less", password="",
                                          port=fleet.password_port)
    assert not cert_device_without_password.connect()

    device = Client(fleet, client_id="ew-agent-sec-pw", username="sec-pw", password=password,
                    port=fleet.password_port)
    assert device.connect(), device.error
    watcher = _controller(fleet)
    try:
        watcher.subscribe("ew/v1/dev/+/reported")
        device.publish(device_topic("sec-pw", DeviceChannel.REPORTED), b"pw ok")
        watcher.expect(device_topic("sec-pw", DeviceChannel.REPORTED), b"pw ok")
        device.publish(device_topic("sec-other", DeviceChannel.REPORTED), b"forged")

        fleet.revoke("sec-pw")
        deadline = time.monotonic() + 5
        while device.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not device.connected, "the broker kept a revoked password client connected"
        again = Client(fleet, username="sec-pw", password=password, port=fleet.password_port)
        assert not again.connect(), "a revoked password was accepted"
        assert [p for t, p in watcher.received if t.endswith("sec-other/reported")] == []
    finally:
        device.close()
        watcher.close()
