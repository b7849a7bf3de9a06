#!/usr/bin/env python3
"""Client side of the testbed: real TCP connections to a VIP.

  spread VIP PORT N             N connections (each from a new source port),
                                prints "backend count" lines
  hold VIP PORT SECONDS OUTFILE one keep-alive connection, a request every
                                100 ms, for SECONDS or until OUTFILE.stop
                                exists; writes the backend of each answer to
                                OUTFILE and exits 0 only if every answer came
                                from the same backend over the same connection
Every loop is bounded; every socket has a timeout.
"""
import collections
import os
import socket
import sys
import time


def request(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return body.decode().strip()


def connect(vip, port, timeout=2.0):
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((vip, port))
    return s


def spread(vip, port, n):
    counts = collections.Counter()
    for _ in range(n):
        try:
            s = connect(vip, port)
            counts[request(s)] += 1
            s.close()
        except (OSError, ConnectionError):
            counts["error"] += 1
    for name, c in sorted(counts.items()):
        print(name, c)


def hold(vip, port, seconds, outfile):
    s = connect(vip, port)
    seen = []
    end = time.time() + seconds
    ok = True
    with open(outfile, "w") as out:
        while time.time() < end and not os.path.exists(outfile + ".stop"):
            try:
                b = request(s)
            except (OSError, ConnectionError) as e:
                out.write("broken %s\n" % e)
                ok = False
                break
            seen.append(b)
            out.write(b + "\n")
            out.flush()
            time.sleep(0.1)
    if len(set(seen)) != 1:
        ok = False
    sys.exit(0 if ok else 1)


def main():
    cmd = sys.argv[1]
    if cmd == "spread":
        spread(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "hold":
        hold(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        sys.exit("usage: e2e_client.py spread|hold ...")


if __name__ == "__main__":
    main()
