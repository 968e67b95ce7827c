#!/usr/bin/env python3
"""listener.py HOST PORT LOG SECONDS — a chat listener on /chat/events that behaves like a
browser's EventSource, for scripts/restart.sh.

It opens `GET /chat/events` (with `Last-Event-ID: <the last id: field seen>` once it has one),
reads the stream as the HTML standard's event stream interpretation does, and shows every
message it gets (stdout, `ID NAME: TEXT`). When the stream ends (the server's FIN, a reset, a
refused connection, a status other than 200) it waits the server's `retry:` (2 s until one
came) and opens it again, for as long as the server is down. A stream that stays silent for
READ_TIMEOUT (30 s: twice the server's 15 s heartbeat) is taken for dead (a server that
vanished without a FIN) and opened again at once.

Everything it sees goes to LOG as JSON lines {"t": unix time, "ev": ..., ...}:
  connect {last_event_id}        a connection attempt
  connect-fail {error}           the attempt failed (refused, unreachable, timed out)
  open {status, port}            the stream's head arrived (status 200); port: the local port
  refused {status}               a head with another status
  msg {id, name, text}           a message event (shown)
  ping / gap {data} / other {event, data}
  fin                            the server closed the stream (recv returned 0 bytes)
  rst {error}                    the connection was reset
  timeout {after}                nothing at all arrived for READ_TIMEOUT seconds
  error {error}                  another socket error
  end                            SECONDS are over

Bounded: it ends after SECONDS (or on SIGTERM); every socket call has a timeout.
"""
import json
import signal
import socket
import sys
import time

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 30.0
DEFAULT_RETRY = 2.0


class Listener:
    def __init__(self, host, port, log, end):
        self.host, self.port, self.end = host, port, end
        self.log_file = log
        self.last_id = ""  # the EventSource's "last event ID string"
        self.retry = DEFAULT_RETRY
        # The event being read (the standard's data buffer, event type and id buffer).
        self.data, self.event, self.id_buf = [], "", ""

    def log(self, ev, **kw):
        self.log_file.write(json.dumps({"t": time.time(), "ev": ev, **kw}) + "\n")
        self.log_file.flush()

    def sleep(self, secs):
        time.sleep(max(0.0, min(secs, self.end - time.time())))

    def run(self):
        while time.time() < self.end:
            again_now = self.stream()
            if not again_now:
                self.sleep(self.retry)
        self.log("end")

    def stream(self):
        """One connection. True when the next one should be opened at once (a dead stream)."""
        self.log("connect", last_event_id=self.last_id or None)
        try:
            s = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        except OSError as e:
            self.log("connect-fail", error=str(e) or type(e).__name__)
            return False
        try:
            req = (f"GET /chat/events HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n"
                   "Cache-Control: no-cache\r\n")
            if self.last_id:
                req += f"Last-Event-ID: {self.last_id}\r\n"
            s.sendall((req + "\r\n").encode())
            s.settimeout(READ_TIMEOUT)
            head, buf = b"", b""
            headed = False
            while time.time() < self.end:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    self.log("timeout", after=READ_TIMEOUT)
                    return True
                except ConnectionResetError as e:
                    self.log("rst", error=str(e))
                    return False
                except OSError as e:
                    self.log("error", error=str(e))
                    return False
                if not chunk:
                    self.log("fin")
                    return False
                if not headed:
                    head += chunk
                    if b"\r\n\r\n" not in head:
                        if len(head) > 16384:
                            self.log("refused", status="head too long")
                            return False
                        continue
                    head, _, chunk = head.partition(b"\r\n\r\n")
                    try:
                        status = int(head.split()[1])
                    except (IndexError, ValueError):
                        status = head[:40].decode("latin-1")
                    if status != 200:
                        self.log("refused", status=status)
                        return False
                    headed = True
                    self.log("open", status=status, port=s.getsockname()[1])
                    self.data, self.event, self.id_buf = [], "", ""
                buf += chunk
                buf = self.lines(buf)
            return False
        finally:
            s.close()

    def lines(self, buf):
        """Processes the whole lines in buf (ended by CRLF, LF or CR); returns the rest."""
        while True:
            cut = [i for i in (buf.find(b"\r\n"), buf.find(b"\n"), buf.find(b"\r")) if i >= 0]
            if not cut:
                return buf
            i = min(cut)
            end = i + 2 if buf[i:i + 2] == b"\r\n" else i + 1
            if buf[i:i + 1] == b"\r" and end == i + 1 and i + 1 == len(buf):
                return buf  # a CR at the very end: a LF may follow in the next chunk
            self.line(buf[:i].decode("utf-8", "replace"))
            buf = buf[end:]

    def line(self, line):
        if line == "":
            self.dispatch()
            return
        if line.startswith(":"):
            return
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self.data.append(value)
        elif field == "event":
            self.event = value
        elif field == "id" and "\0" not in value:
            self.id_buf = value
        elif field == "retry" and value.isdigit():
            self.retry = int(value) / 1000.0

    def dispatch(self):
        self.last_id = self.id_buf
        if not self.data:
            self.event = ""
            return
        data = "\n".join(self.data)
        kind = self.event or "message"
        self.data, self.event = [], ""
        if kind == "message":
            try:
                m = json.loads(data)
            except ValueError:
                self.log("other", event=kind, data=data)
                return
            self.log("msg", id=m.get("id"), name=m.get("name"), text=m.get("text"))
            print(f"{m.get('id')} {m.get('name')}: {m.get('text')}", flush=True)
        elif kind == "ping":
            self.log("ping")
        elif kind == "gap":
            self.log("gap", data=data)
        else:
            self.log("other", event=kind, data=data)


def main():
    if len(sys.argv) != 5:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    host, port, path, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(path, "a", encoding="utf-8") as log:
        Listener(host, port, log, time.time() + secs).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
