"""An MLLP listener (``\\x0b message \\x1c\\x0d``) that hands each message over and answers with an ACK.

Each connection is served by its own thread and may carry any number of messages. A
message is acknowledged only after the handler returned: the hub's handler stores the
message durably and returns ``("AA", "")``. A handler that raises gets the sender an
``AE`` with a generic text (never the exception's text: it may hold personal data); a
message larger than ``max_size`` gets an ``AR`` and the connection is closed.
"""

from __future__ import annotations

import logging
import re
import socket
import socketserver
import threading
from collections.abc import Callable

from adapters.hl7v2.ack import ACK_CODES, ack
from adapters.hl7v2.text import decode_message

START, END, CR = b"\x0b", b"\x1c", b"\x0d"
#: Default largest message accepted (bytes between the framing characters).
MAX_SIZE = 1 << 20
Handler = Callable[[str], tuple[str, str]]
logger = logging.getLogger(__name__)


def frame(message: str, encoding: str = "utf-8") -> bytes:
    """A message in its MLLP envelope."""
    return START + message.encode(encoding) + END + CR


class _Connection(socketserver.BaseRequestHandler):
    """One client connection: read frames, hand each message over, write its ACK."""

    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        sock: socket.socket = self.request
        sock.settimeout(owner.idle_timeout)
        buffer = b""
        try:
            while True:
                start = buffer.find(START)
                buffer = buffer[start:] if start >= 0 else b""  # bytes outside a frame are noise
                end = buffer.find(END)
                if end >= 0:
                    data, buffer = buffer[1:end], buffer[end + 1 :].lstrip(CR)
                    data = data[data.rfind(START) + 1 :]  # a frame restarted before it ended: its last start
                    if len(data) > owner.max_size:
                        self._reject(data)
                        return
                    self._answer(data)
                    continue
                if len(buffer) > owner.max_size + 1:
                    self._reject(buffer[1:])
                    return
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
        except OSError:
            return  # the peer went away, timed out, or the server is stopping

    def _answer(self, data: bytes) -> None:
        message, encoding = decode_message(data)
        owner = self.server.owner
        try:
            with owner._lock:
                code, text = owner.handle(message)
            if code not in ACK_CODES:
                raise ValueError("the handler returned an unknown acknowledgement code")
        except Exception as exc:  # whatever the handler raised, the sender gets an AE and the server goes on
            logger.error("MLLP handler failed on a message (%s)", type(exc).__name__)
            logger.debug("MLLP handler failure", exc_info=True)
            code, text = "AE", "the message could not be processed"
        self.request.sendall(frame(ack(message, code, text), encoding))

    def _reject(self, data: bytes) -> None:
        """AR "message too large", then close politely (drain what the sender still writes)."""
        message, encoding = decode_message(re.split(rb"[\r\n]", data[:4096], maxsplit=1)[0])  # its MSH
        sock: socket.socket = self.request
        sock.sendall(frame(ack(message, "AR", "message too large"), encoding))
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        drained = 0
        while drained < 4 * self.server.owner.max_size:
            chunk = sock.recv(65536)  # closing with unread data would reset the connection before the AR is read
            if not chunk:
                break
            drained += len(chunk)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: MllpServer

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        self.owner._track(request, True)  # in the serving thread: stop() sees every accepted connection
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        self.owner._track(request, False)
        super().shutdown_request(request)


class MllpServer:
    """A threaded MLLP listener on ``host:port`` (port 0: an ephemeral port, see :attr:`port`).

    ``handle(message)`` returns ``(ack_code, text)`` with ack_code AA, AE or AR; calls are
    serialised (one message at a time across connections), so the handler need not be
    thread-safe. Connections idle for ``idle_timeout`` seconds are closed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handle: Handler,
        *,
        max_size: int = MAX_SIZE,
        idle_timeout: float = 300.0,
    ) -> None:
        self.host = host
        self.handle = handle
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port listened on (the real one once started, even when 0 was asked for)."""
        return self._server.server_address[1] if self._server is not None else self._port

    def start(self) -> MllpServer:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((self.host, self._port), _Connection)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"mllp-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close open connections.

        A message being handled is still handled, but its ACK may not reach the sender
        (who then sends it again: the hub's storing must be idempotent, as every ingest is).
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._sockets_lock:
            for sock in list(self._sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _track(self, sock: socket.socket, open_: bool) -> None:
        with self._sockets_lock:
            (self._sockets.add if open_ else self._sockets.discard)(sock)

    def __enter__(self) -> MllpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MllpClient:
    """A client connection sending messages one after the other and reading each ACK."""

    def __init__(self, host: str, port: int, timeout: float = 5, encoding: str = "utf-8") -> None:
        self.encoding = encoding
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def send(self, message: str) -> str:
        """Send one message and return the ACK's text (framing removed)."""
        self._sock.sendall(frame(message, self.encoding))
        return self.receive()

    def receive(self) -> str:
        """The next framed answer; ConnectionError if the server closes before sending one."""
        while END not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the MLLP server closed the connection without an answer")
            self._buffer += chunk
        end = self._buffer.index(END)
        data, self._buffer = self._buffer[:end], self._buffer[end + 1 :].lstrip(CR)
        return data.lstrip(START).decode(self.encoding, errors="replace")

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_mllp(host: str, port: int, message: str, timeout: float = 5) -> str:
    """Send one message over a new MLLP connection and return the ACK's text."""
    with MllpClient(host, port, timeout) as client:
        return client.send(message)
