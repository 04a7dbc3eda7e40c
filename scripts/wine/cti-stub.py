#!/usr/bin/env python3
"""A stand-in CTI server for the release check of astcti-client.exe under Wine (scripts/release.sh):
the original protocol's login (100 CTISERVER WELCOME, USER -> 100 OK, PASS -> 102 OK) for any
credentials, NOOP -> 100 OK, and every line it receives appended to LOG. The real server is tested
against the Linux client in tests/client_e2e.rs; this only lets the Windows binary log in.
  cti-stub.py PORTFILE LOG      listens on 127.0.0.1 (a free port, written to PORTFILE); stops after 120 s
"""
import socket, sys, threading, time

port_file, log_file = sys.argv[1], sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
with open(port_file, "w") as f:
    f.write(str(srv.getsockname()[1]))
threading.Timer(120, lambda: __import__("os")._exit(0)).start()


def serve(c):
    c.sendall(b"100 CTISERVER WELCOME\n")
    buf = b""
    while True:
        data = c.recv(4096)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            with open(log_file, "ab") as f:
                f.write(line + b"\n")
            if line.startswith(b"PASS "):
                c.sendall(b"102 OK\n")
            elif line == b"QUIT":
                c.sendall(b"900 BYE\n")
                return
            else:
                c.sendall(b"100 OK\n")


while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
