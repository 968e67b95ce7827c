#!/usr/bin/env python3
"""judge.py — read the JSON-line logs of scripts/restart.sh's listeners and judge them.

The logs (one JSON object a line, "t" = unix time):
  python   listener.py's log (ev msg / fin / rst / timeout / connect / ...)
  chat     stamp.py's log of `chat --listen` (ev out / err lines)
  page     page.mjs's log (ev msg / note / es-error / req / ...)
  sock     sockwatch.py's log (ev sock, who, port, state, held)

Subcommands (times are unix seconds, limits seconds; exit 0 = pass, 1 = fail):
  wait T0 LIMIT NAME TEXT KIND=LOG...   poll (every 0.1 s, until T0+LIMIT) until every LOG shows
                                        the message NAME: TEXT after T0; 0 when all do
  shown KIND LOG NAME TEXT T0 LIMIT     the message is shown after T0, within LIMIT s
  ended KIND LOG T0 LIMIT               the listener's stream ended within LIMIT s of T0:
                                        python: a `fin` (a reset, a timeout or nothing fails);
                                        page: an EventSource error event; sock (the chat
                                        client's connection): its kernel state left ESTABLISHED
                                        and the client closed its side (WHO=label; PORTS=...:
                                        only those local ports are judged)
  notes KIND LOG T0 T1                  prints how many "server was restarted" notes the
                                        client gave in (T0, T1]
  nofin LOG T0 T1                       python: no fin/rst in (T0, T1] (a SIGKILLed server
                                        says nothing)
  first KIND LOG T0 EV...               prints the delay to the first event EV after T0
  dump LOG T0                           the events after T0, times relative to T0

shown and ended print `info: ...` lines (restart.sh shows them) and, with TIMES=FILE and
LABEL=... in the environment, append `LABEL<TAB>SECONDS` to FILE.
"""
import json
import os
import sys
import time


def events(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def is_message(kind, e, name, text):
    if kind == "chat":
        return e.get("ev") == "out" and e.get("line") == f"{name}: {text}"
    return e.get("ev") == "msg" and e.get("text") == text and (e.get("name") or "anon") == name


def find_shown(kind, path, name, text, t0):
    for e in events(path):
        if e.get("t", 0) > t0 and is_message(kind, e, name, text):
            return e
    return None


def record(secs):
    times, label = os.environ.get("TIMES"), os.environ.get("LABEL")
    if times and label:
        with open(times, "a", encoding="utf-8") as f:
            f.write(f"{label}\t{'-' if secs is None else f'{secs:.3f}'}\n")


def dump(path, t0, limit=25):
    ev = [e for e in events(path) if e.get("t", 0) > t0 - 1]
    lines = []
    for e in ev[-limit:]:
        rest = {k: v for k, v in e.items() if k not in ("t", "ev")}
        lines.append(f"  {e.get('t', 0) - t0:+8.3f} s {e.get('ev')} {json.dumps(rest, ensure_ascii=False) if rest else ''}")
    return "\n".join(lines) if lines else "  (nothing logged)"


def cmd_wait(t0, limit, name, text, *pairs):
    logs = [p.split("=", 1) for p in pairs]
    end = t0 + limit
    for _ in range(int(limit * 10) + 20):
        if all(find_shown(k, path, name, text, t0) for k, path in logs):
            return 0
        if time.time() >= end:
            return 1
        time.sleep(0.1)
    return 1


def cmd_shown(kind, path, name, text, t0, limit):
    e = find_shown(kind, path, name, text, t0)
    if e is None:
        record(None)
        print(f"'{name}: {text}' not shown in the {time.time() - t0:.1f} s since the post; the log since then:")
        print(dump(path, t0))
        return 1
    d = e["t"] - t0
    record(d)
    print(f"info: shown {d:.3f} s after the post (limit {limit:g} s)")
    if d > limit:
        print(f"shown after {d:.3f} s, want <= {limit:g} s")
        print(dump(path, t0))
        return 1
    return 0


def cmd_ended(kind, path, t0, limit):
    ev = [e for e in events(path) if e.get("t", 0) > t0]
    if kind == "python":
        e = next((e for e in ev if e.get("ev") in ("fin", "rst", "timeout", "error")), None)
        if e is None:
            record(None)
            print(f"the stream did not end in the {time.time() - t0:.1f} s since the signal; log:")
            print(dump(path, t0))
            return 1
        d = e["t"] - t0
        record(d)
        print(f"info: the stream ended with a {e['ev']} {d:.3f} s after the signal (limit {limit:g} s)")
        if e["ev"] != "fin" or d > limit:
            print(f"want a fin within {limit:g} s; log:")
            print(dump(path, t0))
            return 1
        return 0
    if kind == "page":
        e = next((e for e in ev if e.get("ev") == "es-error"), None)
        nxt = next((x for x in ev if x.get("ev") == "req"), None)
        if e is None:
            record(None)
            print(f"no EventSource error event in the {time.time() - t0:.1f} s since the signal; log:")
            print(dump(path, t0))
            return 1
        d = e["t"] - t0
        record(d)
        rs = {0: "CONNECTING: reconnecting by itself", 1: "OPEN", 2: "CLOSED"}.get(e.get("rs"), e.get("rs"))
        again = f"; its next /chat/events request {nxt['t'] - t0:.3f} s after the signal" if nxt else ""
        print(f"info: EventSource error event {d:.3f} s after the signal (readyState {rs}){again} (limit {limit:g} s)")
        if d > limit:
            print(dump(path, t0))
            return 1
        return 0
    if kind == "sock":
        who = os.environ.get("WHO", "chat")
        socks = [e for e in events(path) if e.get("ev") == "sock" and e.get("who") == who]
        before = {e["port"] for e in socks if e["t"] <= t0 and e.get("state") == "ESTABLISHED"}
        # The connections open at the signal: ESTABLISHED as last seen before it.
        last = {}
        for e in socks:
            if e["t"] <= t0:
                last[e["port"]] = e
        open_ports = [p for p in before if last.get(p, {}).get("state") == "ESTABLISHED"]
        # PORTS=...: judge only these connections (the event stream's); the others (a
        # browser's idle keep-alive connection, say) are only shown.
        only = {int(p) for p in os.environ.get("PORTS", "").split() if p.isdigit()}
        others = [p for p in open_ports if only and p not in only]
        open_ports = [p for p in open_ports if not only or p in only]
        if not open_ports:
            record(None)
            print(f"{who} held no ESTABLISHED connection to the server at the signal; log:")
            print(dump(path, t0))
            return 1
        worst_left, worst_closed, lines, bad = 0.0, 0.0, [], False
        for p in open_ports:
            after = [e for e in socks if e["port"] == p and e["t"] > t0]
            left = next((e for e in after if e["state"] != "ESTABLISHED"), None)
            closed = next((e for e in after if not e["held"] or e["state"] in ("LAST_ACK", "GONE", "CLOSE")), None)
            if left is None or closed is None:
                bad = True
                lines.append(f"port {p}: " + ("still ESTABLISHED" if left is None else
                                              f"{left['state']} {left['t'] - t0:.3f} s after the signal, never closed by {who}"))
                continue
            worst_left = max(worst_left, left["t"] - t0)
            worst_closed = max(worst_closed, closed["t"] - t0)
            lines.append(f"port {p}: {left['state']} {left['t'] - t0:.3f} s after the signal, "
                         f"closed by {who} ({closed['state']}, held {closed['held']}) at {closed['t'] - t0:.3f} s")
        record(None if bad else worst_closed)
        for line in lines:
            print(("" if bad else "info: ") + f"{who}'s connection " + line)
        for p in others:
            after = [e for e in socks if e["port"] == p and e["t"] > t0]
            print(f"info: (not judged) {who}'s other connection port {p}: " +
                  ", ".join(f"{e['state']}{'' if e['held'] else ' (released)'} at {e['t'] - t0:.3f} s" for e in after))
        if bad or worst_closed > limit:
            if not bad:
                print(f"want <= {limit:g} s")
            print(dump(path, t0))
            return 1
        return 0
    print(f"unknown kind {kind}")
    return 2


def cmd_notes(kind, path, t0, t1):
    n = 0
    for e in events(path):
        if not t0 < e.get("t", 0) <= t1:
            continue
        if kind == "page" and e.get("ev") == "note" and "server was restarted" in (e.get("text") or ""):
            n += 1
        if kind == "chat" and e.get("ev") == "err" and "server was restarted" in (e.get("line") or ""):
            n += 1
    print(n)
    return 0


def cmd_nofin(path, t0, t1):
    bad = [e for e in events(path) if t0 < e.get("t", 0) <= t1 and e.get("ev") in ("fin", "rst")]
    if bad:
        print(f"the listener got a {bad[0]['ev']} {bad[0]['t'] - t0:.3f} s after the SIGKILL")
        return 1
    print(f"info: no fin or reset in the {t1 - t0:.1f} s after the SIGKILL: the connection dangles")
    return 0


def cmd_first(kind, path, t0, *evs):
    e = next((e for e in events(path) if e.get("t", 0) > t0 and e.get("ev") in evs), None)
    print("-" if e is None else f"{e['t'] - t0:.3f}")
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    c, a = argv[1], argv[2:]
    if c == "wait":
        return cmd_wait(float(a[0]), float(a[1]), a[2], a[3], *a[4:])
    if c == "shown":
        return cmd_shown(a[0], a[1], a[2], a[3], float(a[4]), float(a[5]))
    if c == "ended":
        return cmd_ended(a[0], a[1], float(a[2]), float(a[3]))
    if c == "notes":
        return cmd_notes(a[0], a[1], float(a[2]), float(a[3]))
    if c == "nofin":
        return cmd_nofin(a[0], float(a[1]), float(a[2]))
    if c == "first":
        return cmd_first(a[0], a[1], float(a[2]), *a[3:])
    if c == "dump":
        print(dump(a[0], float(a[1]), limit=200))
        return 0
    print(f"unknown subcommand {c}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
