#!/usr/bin/env python3
"""WER and speed of transcript JSON lines ({"clip", "text", "audio_s", "wall_s"}) against manifests.

  score.py --manifest .cache/parity/synth/manifest.jsonl --manifest .cache/parity/real/manifest.jsonl \
      fw-greedy-f32.jsonl kiki-greedy-f32.jsonl ...

One row per (result file, set); a set is a manifest's folder name (or, with --by-source, each
manifest line's "source"). WER is corpus-level: word edits summed over clips / reference words
summed, words normalised as Kiki's eval::wer does (lower-case, split on whitespace, keep letters,
digits and apostrophes). RTF is the median of wall_s / audio_s; "x RT" is sequential throughput,
total audio seconds / total wall seconds. Any engine that prints these JSON lines can be scored.
"""
import argparse
import json
import os
import statistics
import sys


def words(s):
    out = ("".join(c for c in w if c.isalnum() or c == "'") for w in s.lower().split())
    return [w for w in out if w]


def word_errors(ref, hyp):
    r, h = words(ref), words(hyp)
    prev = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        cur = [i] + [0] * len(h)
        for j in range(1, len(h) + 1):
            cur[j] = min(prev[j - 1] + (r[i - 1] != h[j - 1]), prev[j] + 1, cur[j - 1] + 1)
        prev = cur
    return prev[len(h)], len(r)


def loops(text):
    """Whether a hypothesis loops: a phrase of 2-8 words three times in a row, or one word four
    times (the same rule as Kiki's decoder guard, on words)."""
    w = words(text)
    for n in range(1, 9):
        times = 4 if n == 1 else 3
        for i in range(0, len(w) - n * times + 1):
            if all(w[i + k * n:i + (k + 1) * n] == w[i:i + n] for k in range(1, times)):
                return True
    return False


def load_refs(manifests, by_source):
    refs = {}
    for m in manifests:
        base = os.path.dirname(os.path.abspath(m))
        for line in open(m):
            if line.strip():
                row = json.loads(line)
                key = os.path.realpath(os.path.join(base, row["clip"]))
                refs[key] = (row["text"], row.get("source") if by_source else os.path.basename(base))
    return refs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="JSON-lines files from fw_transcribe.py (or Kiki)")
    p.add_argument("--manifest", action="append", required=True)
    p.add_argument("--by-source", action="store_true")
    p.add_argument("--errors", action="store_true", help="also print every clip with word errors")
    args = p.parse_args()
    refs = load_refs(args.manifest, args.by_source)
    print(f"{'result':<28} {'set':<22} {'clips':>5} {'WER %':>6} {'RTF med':>8} {'audio s':>8} {'wall s':>7} {'x RT':>6}"
          f" {'loops':>5}")
    for path in args.results:
        groups = {}
        for line in open(path):
            if not line.strip():
                continue
            row = json.loads(line)
            key = os.path.realpath(row["clip"])
            if key not in refs:
                continue  # a clip of a set not asked for
            ref, group = refs[key]
            e, n = word_errors(ref, row["text"])
            if e and args.errors:
                print(f"  [{e}/{n}] {os.path.basename(row['clip'])}: ref={ref!r} hyp={row['text']!r}", file=sys.stderr)
            for g in (group, "all"):
                groups.setdefault(g, []).append((e, n, row["audio_s"], row["wall_s"], loops(row["text"])))
        name = os.path.basename(path).removesuffix(".jsonl")
        for g, rows in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0])):
            if g == "all" and len(groups) == 2:
                continue  # one set only: "all" repeats it
            edits, ref_words = sum(r[0] for r in rows), sum(r[1] for r in rows)
            audio, wall = sum(r[2] for r in rows), sum(r[3] for r in rows)
            rtf = statistics.median(r[3] / r[2] for r in rows)
            print(f"{name:<28} {g:<22} {len(rows):>5} {100 * edits / max(ref_words, 1):>6.2f} {rtf:>8.3f}"
                  f" {audio:>8.1f} {wall:>7.1f} {audio / wall:>6.2f} {sum(r[4] for r in rows):>5}")


if __name__ == "__main__":
    main()
