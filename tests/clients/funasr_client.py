#!/usr/bin/env python3
"""Recognize a WAV file with the PyPI package funasr-client==0.1.6, unchanged, against a
FunASR-protocol server. Run with .cache/clients/funasr-client/bin/python (tests/clients/setup.sh).

It does what the package README shows for file recognition: `async_file_asr(path, uri, ...)`,
which is `async_merge_messages(async_file_asr_stream(...))`; the driver makes that same call and
only records each message the stream yields on its way into the library's merge. `--api sync`
uses the synchronous twins (`file_asr` = `merge_messages(file_asr_stream(...))`), the README's
first example and the package CLI's default; in 0.1.6 their client close() takes a non-reentrant
lock twice (client.py:112-114 -> 93-94) and never returns, so that run ends at --deadline.
Options left out keep the library's defaults (the function defaults, not the CLI's).

Prints one JSON object on stdout:
  text     the merged message's "text" (null if the library raised)
  results  every (decoded) message the stream yielded, in order
  merged   the merged message file_asr returns (null if it raised)
  error    null, or "module.Exception: message" of what the library raised
  seconds  wall time of the whole call (connect .. close)
Exit status: 0 finished, 1 the library raised, 124 --deadline ran out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

LIBRARY = "funasr-client==0.1.6"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=f"Recognize a WAV file with {LIBRARY} (async_file_asr / file_asr) "
        "and print one JSON report on stdout.",
    )
    _harness.add_server_arguments(p)
    p.add_argument("--wav", required=True,
                   help="16-bit mono .wav (its frames are sent as PCM) or .pcm; other suffixes "
                   "are sent as raw file bytes with wav_format=<suffix>")
    p.add_argument("--chunk-size", type=int, nargs=3, metavar=("P", "C", "F"),
                   help="chunk_size (library default: 5 10 5)")
    p.add_argument("--chunk-interval", type=int,
                   help="chunk_interval; only sizes the frames sent, "
                   "60*C/chunk_interval ms each (library default: 10)")
    p.add_argument("--sample-rate", type=int,
                   help="sample_rate for .pcm input; .wav uses its header (library default: 16000)")
    p.add_argument("--hotwords", nargs="+", metavar="WORD:WEIGHT", type=_harness.hotword,
                   help="hotwords (library default: none)")
    p.add_argument("--itn", choices=["true", "false"], help="itn (library default: not sent)")
    p.add_argument("--api", choices=["async", "sync"], default="async",
                   help="async_file_asr (default) or file_asr")
    p.add_argument("--deadline", type=float, default=180.0,
                   help="harness limit, seconds: report and exit 124 if the library has not "
                   "returned by then; the library itself never times out (default: 180)")
    return p.parse_args()


def library_kwargs(args: argparse.Namespace) -> dict:
    kw = {"mode": args.mode}
    if args.chunk_size is not None:
        kw["chunk_size"] = tuple(args.chunk_size)
    if args.chunk_interval is not None:
        kw["chunk_interval"] = args.chunk_interval
    if args.sample_rate is not None:
        kw["sample_rate"] = args.sample_rate
    if args.hotwords:
        kw["hotwords"] = dict(args.hotwords)
    if args.itn is not None:
        kw["itn"] = args.itn == "true"
    return kw


async def recognize_async(args: argparse.Namespace, run: _harness.Run) -> dict:
    from funasr_client import async_file_asr_stream, async_merge_messages

    async def recorded():
        async for msg in async_file_asr_stream(args.wav, args.url, **library_kwargs(args)):
            run.results.append(msg)
            yield msg

    return await async_merge_messages(recorded())


def recognize_sync(args: argparse.Namespace, run: _harness.Run) -> dict:
    from funasr_client import file_asr_stream, merge_messages

    def recorded():
        for msg in file_asr_stream(args.wav, args.url, **library_kwargs(args)):
            run.results.append(msg)
            yield msg

    return merge_messages(recorded())


def main() -> None:
    args = parse_args()
    run = _harness.Run(LIBRARY, args.deadline)
    run.out["merged"] = None
    try:
        _harness.isolate_library_import()
        import funasr_client  # noqa: F401  (an import failure is reported before the clock starts)

        run.start()
        if args.api == "async":
            merged = asyncio.run(recognize_async(args, run))
        else:
            merged = recognize_sync(args, run)
        run.out["merged"] = merged
        run.out["text"] = merged["text"]
    except BaseException as e:
        run.fail(e)
    run.finish()


if __name__ == "__main__":
    main()
