#!/usr/bin/env python3
"""A backend's HTTP service for the testbed: answers every GET with its name,
and every POST with "backend=NAME received=BYTES backend_mss=MSS" (the body
read whole; MSS is this socket's TCP_MAXSEG, its send segment size).

Binds [::]:PORT dual-stack, so it serves the VIPs on the loopback (IPv4 and
IPv6) and the backend's own address (for health checks) alike. Threaded, so
long-lived keep-alive connections do not block others.
"""
import http.server
import socket
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # a stalled client (an upload lost in the network) frees its thread

    def do_GET(self):
        body = (self.server.name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        left = int(self.headers.get("Content-Length", "0"))
        received = 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            received += len(chunk)
            left -= len(chunk)
        mss = self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        body = ("backend=%s received=%d backend_mss=%d\n" % (self.server.name, received, mss)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    name, port = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 80
    srv = Server(("::", port), Handler)
    srv.name = name
    srv.serve_forever()


if __name__ == "__main__":
    main()
