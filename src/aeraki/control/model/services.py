"""Protocol detection by port name (reference §4) and the ServiceEntry port/endpoint checks.

``protocol_of("tcp-metaprotocol-dubbo-20880")`` is the rule every part of the control plane uses
to decide what a port speaks; translation calls the same functions.
"""

from __future__ import annotations

import enum
import ipaddress

from aeraki.control.model.base import child_path
from aeraki.control.model.istio import ServiceEntrySpec
from aeraki.control.model.reader import Reader

__all__ = [
    "BUILTIN_CODECS",
    "Protocol",
    "application_protocol_of",
    "check_service_entry_ports",
    "protocol_of",
]

# Codecs known without any ApplicationProtocol resource (§2.2).
BUILTIN_CODECS: dict[str, str] = {
    "dubbo": "aeraki.meta_protocol.codec.dubbo",
    "thrift": "aeraki.meta_protocol.codec.thrift",
}


class Protocol(enum.Enum):
    """§4.1 table; ``has_generator`` is False for protocols recognised but not configured."""

    DUBBO = "dubbo"
    THRIFT = "thrift"
    REDIS = "redis"
    KAFKA = "kafka"
    ZOOKEEPER = "zookeeper"
    METAPROTOCOL = "metaprotocol"
    MONGO = "mongo"
    MYSQL = "mysql"
    UNSUPPORTED = "unsupported"

    @property
    def has_generator(self) -> bool:
        return self not in (Protocol.MONGO, Protocol.MYSQL, Protocol.UNSUPPORTED)


def protocol_of(port_name: str) -> Protocol:
    """The second ``-``-separated token, lower-cased; the first token is not checked (§4.1)."""
    parts = port_name.split("-")
    if len(parts) < 2:
        return Protocol.UNSUPPORTED
    try:
        protocol = Protocol(parts[1].lower())
    except ValueError:
        return Protocol.UNSUPPORTED
    return protocol


def application_protocol_of(port_name: str) -> str | None:
    """The MetaProtocol application protocol: the third token, case kept (§4.2).

    ``None`` when the port is not MetaProtocol or has no third token (``tcp-metaprotocol``, which
    panics Aeraki's generator, quirk §16.1: we report it instead).
    """
    if protocol_of(port_name) is not Protocol.METAPROTOCOL:
        return None
    parts = port_name.split("-")
    return parts[2] if len(parts) > 2 and parts[2] else None


def check_service_entry_ports(r: Reader, spec: ServiceEntrySpec, path: str) -> None:
    """Port numbers unique and in range, port names usable for §4, endpoints consistent."""
    ports = child_path(path, "ports")
    if not spec.ports:
        r.warning(ports, "no ports: Aeraki generates nothing for this service")
    numbers: dict[int, int] = {}
    names = {p.name for p in spec.ports if p.name}
    for i, port in enumerate(spec.ports):
        item = r.item(ports, i)
        if port.number == 0:
            r.error(child_path(item, "number"), "port number 0 must be in the range 1..65535")
        elif port.number in numbers:
            r.error(
                child_path(item, "number"),
                f"port number {port.number} is already defined by "
                f"{r.item(ports, numbers[port.number]).rsplit('.', 1)[-1]}",
            )
        numbers.setdefault(port.number, i)
        if not port.name:
            r.warning(item, "port has no name: protocol detection by port name (§4) cannot apply")
        elif protocol_of(port.name) is Protocol.METAPROTOCOL and not application_protocol_of(
            port.name
        ):
            r.error(
                child_path(item, "name"),
                f'port name "{port.name}" has no application protocol '
                "(name MetaProtocol ports tcp-metaprotocol-<protocol>[-<suffix>])",
            )
    for i, endpoint in enumerate(spec.endpoints):
        item = r.item(child_path(path, "endpoints"), i)
        if spec.resolution == "STATIC" and not _is_ip(endpoint.address):
            r.error(
                child_path(item, "address"),
                f'endpoint address "{endpoint.address}" must be an IP address '
                "or unix:// socket when resolution is STATIC",
            )
        for name in endpoint.ports:
            if name not in names:
                r.error(
                    child_path(child_path(item, "ports"), name),
                    f'endpoint port "{name}" is not a port name of this service entry',
                )


def _is_ip(address: str) -> bool:
    if address.startswith("unix://"):
        return True
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
