#!/usr/bin/env python3
"""Health check of the stand-in broker: an ApiVersions request (v0) must be answered without
error. Takes ``--bootstrap-server HOST:PORT`` like Kafka's kafka-broker-api-versions.sh."""

import socket
import struct
import sys

args = sys.argv[1:]
address = args[args.index("--bootstrap-server") + 1] if "--bootstrap-server" in args else ""
host, _, port = (address or "localhost:9092").rpartition(":")
client_id = b"storemon-healthcheck"
request = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


with socket.create_connection((host, int(port)), timeout=5) as sock:
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", read_exactly(sock, 4))
    correlation_id, error_code = struct.unpack(">ih", read_exactly(sock, size)[:6])
sys.exit(0 if correlation_id == 7 and error_code == 0 else 1)
