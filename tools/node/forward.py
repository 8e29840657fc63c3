"""A port of the host's 127.0.0.1 relayed to an address inside the node's network namespace:
how `pulumi up`, kubectl or a test on the host reach the API server (or a Service) of the node.

In-process (`Forwarder`, a daemon thread) for tests; `python -m tools.node.forward NETNS
LISTEN_PORT HOST PORT` runs one as its own process for a node brought up from the shell."""

from __future__ import annotations

import socket
import sys
import threading

from tools.node import netns


class Forwarder:
    def __init__(self, ns: str, host: str, port: int, listen_port: int = 0) -> None:
        self.ns, self.host, self.port = ns, host, port
        self._listener = socket.create_server(("127.0.0.1", listen_port), backlog=64)
        self.listen_port = self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name=f"forward-{self.listen_port}")
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.listen_port)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = netns.connect(self.ns, self.host, self.port)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def main(argv: list[str]) -> None:
    ns, listen_port, host, port = argv
    forwarder = Forwarder(ns, host, int(port), int(listen_port))
    print(f"forwarding 127.0.0.1:{forwarder.listen_port} to {host}:{port} in {ns}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
