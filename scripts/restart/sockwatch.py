#!/usr/bin/env python3
"""sockwatch.py HOST PORT SECONDS LOG LABEL=PID... — watch, from the client's side, the TCP
connections that processes hold to HOST:PORT, for scripts/restart.sh. Run it in the clients'
network namespace: it reads that namespace's /proc/net/tcp and each PID's /proc/PID/fd.

Every 20 ms for SECONDS it notes, for every connection to HOST:PORT that one of the PIDs holds
(or held: a connection is followed after its process closed it, through FIN-WAIT, LAST-ACK,
TIME-WAIT, until it is gone), its kernel state and whether the process still holds it. Each
change is a JSON line in LOG:

  {"t": unix time, "ev": "sock", "who": LABEL, "port": LOCAL_PORT, "state": "ESTABLISHED"|
   "CLOSE_WAIT"|...|"GONE", "held": true|false}

The first snapshot ends with {"ev": "ready"}. A connection whose state goes from ESTABLISHED to
CLOSE_WAIT got the server's FIN; one that then leaves CLOSE_WAIT (held false, LAST_ACK or
gone) was closed by its process in answer.
"""
import json
import os
import socket
import struct
import sys
import time

STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
          6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def hex_addr(host, port):
    ip = struct.unpack("<I", socket.inet_aton(host))[0]
    return f"{ip:08X}:{port:04X}"


def table(remote):
    """{local port: (state, inode)} of the IPv4 TCP sockets connected to `remote`."""
    rows = {}
    try:
        with open("/proc/net/tcp", encoding="ascii") as f:
            next(f)
            for line in f:
                p = line.split()
                if len(p) < 10 or p[2] != remote:
                    continue
                rows[int(p[1].split(":")[1], 16)] = (STATES.get(int(p[3], 16), p[3]), int(p[9]))
    except OSError:
        pass
    return rows


def inodes(pid):
    """The socket inodes PID holds (empty once it is gone)."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def main():
    if len(sys.argv) < 6:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    host, port, secs, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    who = []
    for arg in sys.argv[5:]:
        label, _, pid = arg.partition("=")
        who.append((label, int(pid)))
    remote = hex_addr(host, port)
    end = time.time() + secs
    seen = {}  # (label, port) -> (state, held)
    with open(path, "a", encoding="utf-8") as log:
        def note(**kw):
            log.write(json.dumps({"t": time.time(), **kw}) + "\n")
            log.flush()

        first = True
        while True:
            rows = table(remote)
            for label, pid in who:
                held = inodes(pid)
                for lport, (state, inode) in rows.items():
                    if inode and inode in held and (label, lport) not in seen:
                        seen[(label, lport)] = None
                for (lab, lport), prev in list(seen.items()):
                    if lab != label:
                        continue
                    state, inode = rows.get(lport, ("GONE", 0))
                    cur = (state, bool(inode) and inode in held)
                    if cur != prev:
                        seen[(lab, lport)] = cur
                        note(ev="sock", who=label, port=lport, state=cur[0], held=cur[1])
            if first:
                note(ev="ready")
                first = False
            if time.time() >= end:
                break
            time.sleep(0.02)
    return 0


if __name__ == "__main__":
    sys.exit(main())
