#!/usr/bin/env python3
"""har_notes.py HAR — summarise the notes REDbot put in a HAR file (`redbot -o har URL`).

REDbot's exit status is always 0, so this is the verdict. Prints, for every response in the
HAR (the URL itself, plus linked assets with `redbot -a`):

    BAD  NOTE_ID (subject) URL: summary        one line per BAD note
    info: N response(s), B BAD, W WARN          the counts
    info: WARN NOTE_ID: summary (xN)            one line per distinct WARN note

Exit status: 0 no BAD note; 1 at least one BAD note; 2 the HAR is unreadable or has no
response in it (REDbot could not fetch the URL).
"""
import json
import sys
from collections import Counter


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: har_notes.py HAR", file=sys.stderr)
        return 2
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            har = json.load(f)
        entries = har["log"]["entries"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"not a REDbot HAR: {sys.argv[1]}: {e}")
        return 2
    if not entries:
        print("the HAR has no entries: REDbot got no response")
        return 2

    bad = []
    warn = Counter()
    warn_text = {}
    for e in entries:
        url = e.get("request", {}).get("url", "?")
        status = e.get("response", {}).get("status")
        if not status:
            bad.append(f"BAD  no response for {url}")
        for note in e.get("_red_messages", []):
            level = note.get("level")
            if level == "BAD":
                bad.append(f"BAD  {note.get('note_id')} ({note.get('subject')}) {url}: {note.get('summary')}")
            elif level == "WARN":
                warn[note.get("note_id")] += 1
                warn_text.setdefault(note.get("note_id"), note.get("summary"))
    for line in bad:
        print(line)
    print(f"info: {len(entries)} response(s), {len(bad)} BAD, {sum(warn.values())} WARN")
    for note_id, n in sorted(warn.items()):
        print(f"info: WARN {note_id}: {warn_text[note_id]}" + (f" (x{n})" if n > 1 else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
