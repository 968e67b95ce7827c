#!/usr/bin/env python3
"""stamp.py LOG -- CMD [ARGS...] — run CMD and write each line it prints to LOG as a JSON line
with the time it arrived, for scripts/restart.sh (the terminal client `chat --listen`):

  {"t": unix time, "ev": "start", "pid": PID, "cmd": [...]}
  {"t": ..., "ev": "out", "line": "..."}      a line on CMD's stdout
  {"t": ..., "ev": "err", "line": "..."}      a line on CMD's stderr
  {"t": ..., "ev": "exit", "rc": STATUS}

SIGTERM (or SIGINT) ends CMD with SIGTERM (SIGKILL 3 s later if it is still there), then this.
CMD should bound itself too (chat --listen --for SECONDS).
"""
import json
import signal
import subprocess
import sys
import threading
import time

lock = threading.Lock()


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print("usage: stamp.py LOG -- CMD [ARGS...]", file=sys.stderr)
        return 2
    path, cmd = sys.argv[1], sys.argv[3:]
    log_file = open(path, "a", encoding="utf-8")

    def log(ev, **kw):
        with lock:
            log_file.write(json.dumps({"t": time.time(), "ev": ev, **kw}) + "\n")
            log_file.flush()

    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log("start", pid=p.pid, cmd=cmd)
    stop = {"at": None}

    def on_signal(*_):
        if stop["at"] is None:
            stop["at"] = time.time()
            p.terminate()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def pump(pipe, kind):
        for raw in iter(pipe.readline, b""):
            log(kind, line=raw.decode("utf-8", "replace").rstrip("\r\n"))

    threads = [threading.Thread(target=pump, args=(p.stdout, "out"), daemon=True),
               threading.Thread(target=pump, args=(p.stderr, "err"), daemon=True)]
    for t in threads:
        t.start()
    while True:
        try:
            rc = p.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if stop["at"] is not None and time.time() > stop["at"] + 3:
                p.kill()
    for t in threads:
        t.join(timeout=2)
    log("exit", rc=rc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
