#!/usr/bin/env python
"""Compares an Autobahn|Testsuite run (its index.json) with the expected results.

    compare.py expected-results.json target/autobahn/reports/index.json [--write]

expected-results.json maps each case to its behaviour ("OK", "NON-STRICT", "INFORMATIONAL",
"UNIMPLEMENTED"); "FAILED" must never be expected. Prints the counts, every difference, and
exits 1 if any case differs or failed. --write replaces the expected file with this run (for
a deliberate change; review the diff).
"""
import json
import sys


def case_key(case):
    return tuple(int(p) for p in case.split("."))


def main():
    expected_path, index_path = sys.argv[1], sys.argv[2]
    with open(index_path) as f:
        index = json.load(f)
    (agent, cases), = index.items()
    got = {case: r["behavior"] for case, r in cases.items()}
    closes = {case: r["behaviorClose"] for case, r in cases.items()}
    counts = {}
    for b in got.values():
        counts[b] = counts.get(b, 0) + 1
    print("autobahn: %d cases against %s: %s" % (
        len(got), agent, ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    if "--write" in sys.argv:
        with open(expected_path, "w") as f:
            json.dump({c: got[c] for c in sorted(got, key=case_key)}, f, indent=0,
                      separators=(",", ":"))
            f.write("\n")
        print("autobahn: wrote %s" % expected_path)
    with open(expected_path) as f:
        expected = json.load(f)
    bad = []
    for case in sorted(set(expected) | set(got), key=case_key):
        e, g = expected.get(case, "<absent>"), got.get(case, "<absent>")
        if e != g or g == "FAILED":
            bad.append("  %s: expected %s, got %s (close: %s)" % (
                case, e, g, closes.get(case, "-")))
    if bad:
        print("autobahn: %d cases differ from %s:" % (len(bad), expected_path))
        print("\n".join(bad))
        return 1
    print("autobahn: every case as expected (0 failed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
