"""config/mosquitto on a real Mosquitto: mutual TLS, no anonymous clients, a per-device ACL.

The test makes its own site CA, broker certificate and client certificates with the openssl
command, runs site.conf and acl with only paths and ports changed (and a second agent added
as config/mosquitto/README.md says: the pi-livingroom block copied under another name), and
connects the agent's own MQTT client for the positive case and plain paho clients for the
refusals.
"""

from __future__ import annotations

import itertools
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from agent.broker import Mosquitto, free_port
from agent.config import MqttSection, TlsSection
from agent.mqtt import Message, MqttClient
from tests.conftest import wait_for

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "config" / "mosquitto"
OPENSSL = shutil.which("openssl")
PASSWD = shutil.which("mosquitto_passwd")
if OPENSSL is None:
    pytest.skip("the openssl command is not installed", allow_module_level=True)

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
subjectAltName = IP:127.0.0.1,DNS:localhost
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class Pki:
    """A certificate authority in a directory, made with the openssl command."""

    serials = itertools.count(1000)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cnf = root / "openssl.cnf"
        self.cnf.write_text(OPENSSL_CNF)

    def openssl(self, command: str, **fields: object) -> None:
        """Run ``openssl command``; each ``{field}`` becomes one argument, spaces and all."""
        assert OPENSSL is not None
        args = [word.format(**fields) for word in command.split()]
        subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=60)

    def key(self, name: str) -> Path:
        path = self.root / f"{name}.key"
        self.openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key}", key=path)
        path.chmod(0o600)
        return path

    def ca(self, name: str) -> tuple[Path, Path]:
        key, crt = self.key(name), self.root / f"{name}.crt"
        command = (
            "req -x509 -config {cnf} -extensions ca -key {key} -subj {subj} -days 30 -out {crt}"
        )
        self.openssl(command, cnf=self.cnf, key=key, subj=f"/CN={name}", crt=crt)
        return crt, key

    def issue(
        self, ca: tuple[Path, Path], name: str, cn: str, kind: str = "client", days: int = 30
    ) -> tuple[Path, Path]:
        """A certificate for ``cn`` signed by ``ca``; ``days=-1`` makes one already expired."""
        key, csr, crt = self.key(name), self.root / f"{name}.csr", self.root / f"{name}.crt"
        command = "req -new -config {cnf} -key {key} -subj {subj} -out {csr}"
        self.openssl(command, cnf=self.cnf, key=key, subj=f"/CN={cn}", csr=csr)
        command = (
            "x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -set_serial {serial} -days {days} "
            "-extfile {cnf} -extensions {kind} -out {crt}"
        )
        fields = {"csr": csr, "ca": ca[0], "ca_key": ca[1], "serial": next(self.serials)}
        self.openssl(command, **fields, days=days, cnf=self.cnf, kind=kind, crt=crt)
        return crt, key


class Site:
    def __init__(self, pki: Pki, broker: Mosquitto, tls_port: int, local_port: int) -> None:
        self.pki = pki
        self.broker = broker
        self.tls_port = tls_port
        self.local_port = local_port
        self.ca = pki.root / "ca.crt"

    def cert(self, name: str) -> tuple[Path, Path]:
        return self.pki.root / f"{name}.crt", self.pki.root / f"{name}.key"


def with_second_agent(acl: str, name: str) -> str:
    """``acl`` with the pi-livingroom block copied for agent ``name``, as an operator would."""
    start = acl.index("user pi-livingroom\n")
    end = acl.index("\n# ---", start)
    return acl + "\n" + acl[start:end].replace("pi-livingroom", name) + "\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    pki = Pki(root)
    ca = pki.ca("ca")
    pki.issue(ca, "broker", "broker", kind="server")
    for name in ("pi-livingroom", "pi-kitchen", "livingroom-1", "kitchen-1", "monitor", "operator"):
        pki.issue(ca, name, name)
    pki.issue(ca, "expired", "livingroom-1", days=-1)
    rogue = pki.ca("rogue-ca")
    pki.issue(rogue, "rogue", "livingroom-1")
    (root / "acl").write_text(with_second_agent((SITE / "acl").read_text(), "pi-kitchen"))
    passwd = root / "passwd"
    if PASSWD is not None:
        subprocess.run(
            [PASSWD, "-c", "-b", str(passwd), "homeassistant", "s3cret"],
            check=True,
            capture_output=True,
            timeout=30,
        )
    else:
        passwd.write_text("")
    tls_port, local_port = free_port(), free_port()
    conf = (
        (SITE / "site.conf")
        .read_text()
        .replace("/etc/mosquitto/edge/", f"{root}/")
        .replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n")
        .replace("listener 1883 127.0.0.1\n", f"listener {local_port} 127.0.0.1\n")
    )
    assert str(root) in conf and str(tls_port) in conf and str(local_port) in conf
    workdir = root / "broker"
    workdir.mkdir()
    with Mosquitto(workdir=workdir, extra=conf) as broker:
        yield Site(pki, broker, tls_port, local_port)


class Client:
    """A paho MQTT 5 client that records what it receives and each PUBACK's reason code."""

    def __init__(
        self,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        reconnect: bool = True,
    ) -> None:
        self.port = port
        self.received: list[tuple[str, bytes]] = []
        self.acks: dict[int, ReasonCode] = {}
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.disconnected = threading.Event()
        self._lock = threading.Lock()
        self.paho = paho.Client(
            CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, reconnect_on_failure=reconnect
        )
        if tls is not None:
            self.paho.tls_set_context(tls)
        if username is not None:
            self.paho.username_pw_set(username, password)
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_publish = self._on_publish
        self.paho.on_disconnect = lambda *args: self.disconnected.set()

    def connect(self) -> Client:
        """Connect (a TLS refusal raises here) and run the network loop."""
        self.paho.connect("127.0.0.1", self.port)
        self.paho.loop_start()
        return self

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.connack = reason
        self.answered.set()
        if not reason.is_failure:
            self.connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        self.acks[mid] = reason

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _ in self.received]

    def publish(self, topic: str, payload: bytes = b"1") -> ReasonCode:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.paho.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        wait_for(lambda: info.mid in self.acks, 10, f"PUBACK for {topic}")
        return self.acks[info.mid]

    def refused(self, topic: str) -> str:
        """Publish at QoS 1 and tell how the broker refused it: "Not authorized" in the PUBACK
        (MQTT 5), or "disconnected" (the other answer MQTT allows, which Mosquitto 2.0 gives
        for some denied publishes). "accepted" otherwise."""
        info = self.paho.publish(topic, b"1", qos=1)
        wait_for(lambda: info.mid in self.acks or self.disconnected.is_set(), 10, topic)
        if info.mid in self.acks:
            reason = self.acks[info.mid]
            return str(reason.getName()) if reason.is_failure else "accepted"
        return "disconnected"

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def context(
    site: Site, name: str | None, *, ca: Path | None = None, tls12: bool = False
) -> ssl.SSLContext:
    """A client context trusting ``ca`` (default: the site CA) with ``name``'s certificate.
    TLS 1.2 makes the broker's verdict on our certificate arrive during the handshake."""
    ctx = ssl.create_default_context(cafile=str(ca or site.ca))
    if name is not None:
        crt, key = site.cert(name)
        ctx.load_cert_chain(str(crt), str(key))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_client(site: Site, name: str, made: list[Client]) -> Client:
    client = Client(site.tls_port, tls=context(site, name)).connect()
    made.append(client)
    assert client.connected.wait(10), f"{name}: {client.connack}"
    return client


def test_the_agent_connects_with_its_certificate(site: Site, clients: list[Client]) -> None:
    crt, key = site.cert("pi-livingroom")
    cfg = MqttSection(
        host="127.0.0.1",
        port=site.tls_port,
        tls=TlsSection(ca_file=site.ca, cert_file=crt, key_file=key),
    )
    got: list[Message] = []
    agent = MqttClient(cfg, "edge-agent-pi-livingroom", will=None, on_message=got.append)
    agent.start()
    try:
        assert agent.wait_connected(10), agent.last_error
        monitor = tls_client(site, "monitor", clients)
        monitor.paho.subscribe("edge/#", qos=1)
        device = tls_client(site, "livingroom-1", clients)

        def reading_arrived() -> bool:  # until the agent's subscription is in place
            assert not device.publish("edge/sensors/livingroom-1/temperature", b"21.5").is_failure
            return bool(got)

        wait_for(reading_arrived, 10, "the device's reading at the agent")
        assert got[0].topic == "edge/sensors/livingroom-1/temperature"
        agent.ack(got[0])
        # only an agent may command an actuator
        assert agent.publish_wait("edge/actuators/livingroom-hvac/hvac/set", b"{}", qos=1)
        wait_for(
            lambda: "edge/actuators/livingroom-hvac/hvac/set" in monitor.topics(),
            10,
            "the agent's command at the monitor",
        )
    finally:
        agent.stop()


@pytest.mark.parametrize(
    ("case", "client_sees", "broker_logs"),
    [
        ("trusts another CA", "certificate verify failed", "alert unknown ca"),
        ("certificate from another CA", "alert unknown ca", "certificate verify failed"),
        ("expired certificate", "alert certificate expired", "certificate verify failed"),
        ("no certificate", "alert handshake failure", "peer did not return a certificate"),
    ],
)
def test_bad_certificates_are_refused_with_a_clear_message(
    site: Site, case: str, client_sees: str, broker_logs: str
) -> None:
    rogue_ca = site.pki.root / "rogue-ca.crt"
    ctx = {
        "trusts another CA": lambda: context(site, "livingroom-1", ca=rogue_ca, tls12=True),
        "certificate from another CA": lambda: context(site, "rogue", tls12=True),
        "expired certificate": lambda: context(site, "expired", tls12=True),
        "no certificate": lambda: context(site, None, tls12=True),
    }[case]()
    client = Client(site.tls_port, tls=ctx)
    with pytest.raises(ssl.SSLError) as refused:
        client.connect()
    assert client_sees in str(refused.value)
    wait_for(lambda: broker_logs in site.broker.log(), 10, f"the broker's log of {case}")


def test_without_a_certificate_under_tls13_nothing_connects(site: Site) -> None:
    """TLS 1.3: the refusal comes after the client's handshake; no CONNACK ever arrives."""
    client = Client(site.tls_port, tls=context(site, None))
    client.paho.connect("127.0.0.1", site.tls_port)  # the handshake succeeds on our side
    results = [client.paho.loop(0.5) for _ in range(20)]
    assert {MQTTErrorCode.MQTT_ERR_CONN_LOST, MQTTErrorCode.MQTT_ERR_NO_CONN} & set(results)
    assert not client.connected.is_set()


def test_nobody_is_anonymous_on_loopback(site: Site, clients: list[Client]) -> None:
    for port in (site.local_port, site.broker.port):
        anonymous = Client(port, reconnect=False).connect()
        clients.append(anonymous)
        assert anonymous.answered.wait(10)
        assert anonymous.connack is not None and anonymous.connack.getName() == "Not authorized"
    if PASSWD is None:
        pytest.skip("mosquitto_passwd is not installed")
    ha = Client(site.local_port, username="homeassistant", password="s3cret").connect()
    clients.append(ha)
    assert ha.connected.wait(10), ha.connack
    wrong = Client(site.local_port, username="homeassistant", password="guess", reconnect=False)
    wrong.connect()
    clients.append(wrong)
    assert wrong.answered.wait(10) and not wrong.connected.is_set()


FORBIDDEN = [
    "edge/sensors/kitchen-1/temperature",  # another device's readings
    "edge/actuators/kitchen-1/valve/state",  # another device's state
    "edge/actuators/livingroom-hvac/hvac/set",  # a command
    "edge/actuators/livingroom-1/light/set",  # a command, even to itself
    "edge/agents/pi-livingroom/status",  # an agent's topic
    "edge/agents/pi-livingroom/results/climate",
    "edge/agents/pi-livingroom/intents",
    "edge/decisions/climate",
    "edge/agents/pi-livingroom/model/update",  # a model update
    f"edge/agents/pi-livingroom/model/chunk/{'0' * 64}/0",
    "edge/groups/livingroom/fl/climate/round",  # federation
    "edge/groups/livingroom/fl/climate/update/livingroom-1",
]


def test_the_acl_drops_what_a_device_may_not_publish(site: Site, clients: list[Client]) -> None:
    monitor = tls_client(site, "monitor", clients)
    monitor.paho.subscribe("#", qos=1)
    probe = tls_client(site, "kitchen-1", clients)

    def subscribed() -> bool:  # a probe from another device shows the subscription is in place
        assert not probe.publish("edge/sensors/kitchen-1/probe").is_failure
        return "edge/sensors/kitchen-1/probe" in monitor.topics()

    wait_for(subscribed, 10, "the monitor's subscription")
    for topic in FORBIDDEN:  # one connection each: Mosquitto may close it on a refusal
        device = Client(site.tls_port, tls=context(site, "livingroom-1"), reconnect=False)
        clients.append(device.connect())
        assert device.connected.wait(10), device.connack
        assert device.refused(topic) in ("Not authorized", "disconnected"), topic
    device = tls_client(site, "livingroom-1", clients)
    allowed = ["edge/actuators/livingroom-1/light/state", "edge/sensors/livingroom-1/temperature"]
    for topic in allowed:
        assert not device.publish(topic).is_failure, topic
    # the broker queues messages for a subscriber in the order it handled them: once the last
    # allowed one is here, anything it had let through before would be here too
    wait_for(lambda: allowed[-1] in monitor.topics(), 10, "the device's own reading")
    seen = [t for t in monitor.topics() if "livingroom-1" in t or t in FORBIDDEN]
    assert seen == allowed


def test_a_device_reads_only_its_own_commands(site: Site, clients: list[Client]) -> None:
    kitchen = tls_client(site, "kitchen-1", clients)
    kitchen.paho.subscribe("edge/actuators/+/+/set", qos=1)
    agent = tls_client(site, "pi-livingroom", clients)

    def delivered() -> bool:
        assert not agent.publish("edge/actuators/livingroom-hvac/hvac/set").is_failure
        assert not agent.publish("edge/actuators/kitchen-1/valve/set").is_failure
        return "edge/actuators/kitchen-1/valve/set" in kitchen.topics()

    wait_for(delivered, 10, "kitchen-1's own command")
    assert set(kitchen.topics()) == {"edge/actuators/kitchen-1/valve/set"}


def refused_for(site: Site, clients: list[Client], name: str, topic: str, size: int = 1) -> str:
    """How the broker answers ``name`` publishing ``size`` bytes on ``topic``, on a connection
    of its own (Mosquitto may close it on a refusal)."""
    client = Client(site.tls_port, tls=context(site, name), reconnect=False)
    clients.append(client.connect())
    assert client.connected.wait(10), client.connack
    info = client.paho.publish(topic, b"x" * size, qos=1)
    wait_for(lambda: info.mid in client.acks or client.disconnected.is_set(), 10, topic)
    if info.mid in client.acks:
        reason = client.acks[info.mid]
        return str(reason.getName()) if reason.is_failure else "accepted"
    return "disconnected"


def test_group_members_federate_each_under_their_own_name(
    site: Site, clients: list[Client]
) -> None:
    from agent.peers.fragments import split
    from agent.peers.rounds import key_topic, round_topic, update_topic
    from agent.peers.vectors import join_topic

    kitchen = tls_client(site, "pi-kitchen", clients)
    kitchen.paho.subscribe("edge/groups/#", qos=1)
    living = tls_client(site, "pi-livingroom", clients)
    own = [
        round_topic("edge", "livingroom", "climate"),
        update_topic("edge", "livingroom", "climate", "pi-livingroom"),
        key_topic("edge", "livingroom", "climate", "pi-livingroom"),
        join_topic("edge", "livingroom", "vectors", "pi-livingroom"),
        round_topic("edge", "livingroom", "vectors") + "/part/0",
        update_topic("edge", "livingroom", "vectors", "pi-livingroom") + "/part/1",
    ]

    def delivered() -> bool:
        for topic in own:
            assert not living.publish(topic, split(b"{}")[0]).is_failure, topic
        return set(own) <= set(kitchen.topics())

    wait_for(delivered, 10, "the federation messages at the other member")
    for topic in (
        update_topic("edge", "livingroom", "climate", "pi-kitchen"),  # another member's name
        key_topic("edge", "livingroom", "climate", "pi-kitchen"),
        join_topic("edge", "livingroom", "vectors", "pi-kitchen"),
        "edge/groups/livingroom/fl/climate/anything",
        "edge/agents/pi-kitchen/model/update",  # another agent's topics
        "edge/agents/pi-kitchen/status",
    ):
        assert refused_for(site, clients, "pi-livingroom", topic) in (
            "Not authorized",
            "disconnected",
        ), topic


def test_an_operator_pushes_a_model_update_that_the_agent_assembles(
    site: Site, clients: list[Client], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as PrivateKey

    from agent.service.modelpush import push
    from agent.service.modelreceiver import Receiver
    from agent.service.modelupdate import Assembler, filters

    key = PrivateKey.generate()
    crt, pem = site.cert("pi-livingroom")
    tls = TlsSection(ca_file=site.ca, cert_file=crt, key_file=pem)
    cfg = MqttSection(port=site.tls_port, tls=tls, subscriptions=filters("edge", "pi-livingroom"))
    assembled: list[Path] = []
    assembler = Assembler(tmp_path / "data", key.public_key(), "pi-livingroom")
    receiver = Receiver(
        assembler,
        "edge",
        "pi-livingroom",
        ack=lambda m: agent.ack(m),
        on_assembled=lambda p, m: assembled.append(p),
    )

    def deliver(msg: Message) -> None:  # as the runtime does; anything else is not ours here
        if not receiver.handle(msg):
            agent.ack(msg)

    agent = MqttClient(cfg, "edge-agent-pi-livingroom-2", will=None, on_message=deliver)
    receiver.start()
    agent.start()
    model = tmp_path / "model.gguf"
    model.write_bytes(os.urandom((1 << 20) + 4321))  # a chunk as large as a manifest allows
    try:
        assert agent.wait_connected(10), agent.last_error
        crt, pem = site.cert("operator")
        operator = MqttSection(tls=TlsSection(ca_file=site.ca, cert_file=crt, key_file=pem))
        push(
            model, "127.0.0.1", site.tls_port, "edge", "pi-livingroom", key, 1 << 20, mqtt=operator
        )
        wait_for(lambda: bool(assembled), 20, "the model assembled at the agent")
    finally:
        agent.stop()
        receiver.stop()
    assert assembled[0].read_bytes() == model.read_bytes()
    assert refused_for(site, clients, "operator", "edge/actuators/livingroom-hvac/hvac/set") in (
        "Not authorized",
        "disconnected",
    )


def test_the_broker_refuses_an_oversized_message(site: Site, clients: list[Client]) -> None:
    monitor = tls_client(site, "monitor", clients)
    monitor.paho.subscribe("edge/sensors/livingroom-1/#", qos=1)
    topic = "edge/sensors/livingroom-1/big"
    for size in ((1 << 20) + 1, 4 << 20):  # over message_size_limit; over max_packet_size
        answer = refused_for(site, clients, "livingroom-1", topic, size)
        assert answer in ("Implementation specific error", "disconnected"), (size, answer)
    device = tls_client(site, "livingroom-1", clients)
    wait_for(
        lambda: (
            not device.publish(topic + "/small").is_failure and topic + "/small" in monitor.topics()
        ),
        10,
        "a small message through",
    )
    assert topic not in monitor.topics()
