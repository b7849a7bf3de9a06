#!/usr/bin/env python3
"""Client side of the testbed: real TCP connections to a VIP.

  spread VIP PORT N             N connections (each from a new source port),
                                prints "backend count" lines
  hold VIP PORT SECONDS OUTFILE one keep-alive connection, a request every
                                100 ms, for SECONDS or until OUTFILE.stop
                                exists; writes the backend of each answer to
                                OUTFILE and exits 0 only if every answer came
                                from the same backend over the same connection
  pmtu VIP PORT MTU OUTFILE     IPv4 path MTU discovery through the balancer:
                                one connection and a request, then an ICMP
                                "fragmentation needed" (next-hop MTU MTU) to
                                the VIP quoting the backend's next segment of
                                it, as a router would send; writes "BACKEND
                                LOCALPORT" to OUTFILE and keeps the connection
                                open until OUTFILE.stop exists (at most 30 s)
  upload VIP PORT BYTES         one POST of BYTES bytes of body; prints
                                "backend=B received=N backend_mss=M
                                client_mss=C": what the backend read, the
                                backend's send MSS on its socket (bounded by
                                the MSS of the client's SYN as it arrived)
                                and the client's own after the upload (its
                                path MTU to the VIP, once learned)
Every loop is bounded; every socket has a timeout.
"""
import collections
import os
import socket
import struct
import sys
import time


def request(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    return read_answer(sock)


def read_answer(sock):
    """The body of one HTTP answer, stripped."""
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


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pmtu(vip, port, mtu, outfile):
    # Capture first, so the backend's segments of the new connection are seen.
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    cap.bind(("eth0", 0))
    cap.settimeout(0.2)
    s = connect(vip, port)
    me, lport = s.getsockname()
    backend = request(s)
    # The backend's next sequence number: after the last segment it sent us
    # (seq + payload, + 1 for SYN or FIN), which we have acknowledged.
    vip_b, me_b = socket.inet_aton(vip), socket.inet_aton(me)
    nxt = None
    end = time.time() + 2
    while time.time() < end:
        try:
            frame = cap.recv(65535)
        except socket.timeout:
            if nxt is not None:
                break
            continue
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] != 6 or ip[12:16] != vip_b or ip[16:20] != me_b:
            continue
        tcp = ip[ihl:]
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        if sport != port or dport != lport:
            continue
        flags = tcp[13]
        payload = struct.unpack("!H", ip[2:4])[0] - ihl - (tcp[12] >> 4) * 4
        nxt = (seq + payload + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
    cap.close()
    if nxt is None:
        sys.exit("pmtu: saw no segment from the backend")
    time.sleep(0.1)  # our ACK reaches the backend: its unacknowledged start is nxt
    # The quoted packet: the backend's next full-size segment, VIP -> us, DF.
    quoted_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1500, 0, 0x4000, 64, 6, 0, vip_b, me_b)
    quoted = quoted_ip + struct.pack("!HHI", port, lport, nxt)
    icmp = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quoted
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    raw.sendto(icmp, (vip, 0))
    raw.close()
    with open(outfile, "w") as out:
        out.write("%s %d\n" % (backend, lport))
    end = time.time() + 30
    while time.time() < end and not os.path.exists(outfile + ".stop"):
        time.sleep(0.1)
    s.close()


def upload(vip, port, nbytes):
    s = connect(vip, port, timeout=20.0)
    s.sendall(b"POST / HTTP/1.1\r\nHost: vip\r\nContent-Length: %d\r\n\r\n" % nbytes)
    chunk = bytes(range(256)) * 64
    sent = 0
    while sent < nbytes:
        n = min(len(chunk), nbytes - sent)
        s.sendall(chunk[:n])
        sent += n
    answer = read_answer(s)
    client_mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    s.close()
    print("%s client_mss=%d" % (answer, client_mss))


def main():
    cmd = sys.argv[1]
    if cmd == "spread":
        spread(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "hold":
        hold(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    elif cmd == "pmtu":
        pmtu(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif cmd == "upload":
        upload(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("usage: e2e_client.py spread|hold|pmtu|upload ...")


if __name__ == "__main__":
    main()
