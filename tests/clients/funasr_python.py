#!/usr/bin/env python3
"""Recognize a WAV file with the PyPI package funasr-python==0.1.5, unchanged, against a
FunASR-protocol server. Run with .cache/clients/funasr-python/bin/python (tests/clients/setup.sh).

It does what the package README shows: build a ClientConfig, create AsyncFunASRClient(config=...),
`await client.recognize_file(path, callback)`, then `await client.close()`. The callback is the
package's SimpleCallback and records every PartialResult / FinalResult / error the library hands
back. Options left out keep the library's defaults.

Prints one JSON object on stdout:
  text     FinalResult.text returned by recognize_file (null if it raised)
  results  every object handed to the callback, in order: {"kind": "partial"|"final", ...the
           PartialResult/FinalResult dataclass fields} or {"kind": "error", "type", "error"}
  final    the returned FinalResult as a dict (null if it raised)
  error    null, or "module.Exception: message" of what the library raised
  seconds  wall time of recognize_file + close; close_seconds: of close() alone
Exit status: 0 finished, 1 the library raised, 124 --deadline ran out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

LIBRARY = "funasr-python==0.1.5"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=f"Recognize a WAV file with {LIBRARY} (AsyncFunASRClient.recognize_file) "
        "and print one JSON report on stdout.",
    )
    _harness.add_server_arguments(p)
    p.add_argument("--wav", required=True, help="audio file (the library loads it with librosa)")
    p.add_argument("--chunk-size", type=int, nargs=3, metavar=("P", "C", "F"),
                   help="ClientConfig.chunk_size (library default: 5 10 5)")
    p.add_argument("--chunk-interval", type=int,
                   help="ClientConfig.chunk_interval; this library also sends the file in frames "
                   "of this many ms (library default: 10)")
    p.add_argument("--hotwords", nargs="+", metavar="WORD:WEIGHT", type=_harness.hotword,
                   help="ClientConfig.hotwords (library default: none)")
    p.add_argument("--timeout", type=float,
                   help="ClientConfig.timeout, seconds: connect, and the wait for is_final "
                   "(library default: 30)")
    p.add_argument("--max-retries", type=int,
                   help="ClientConfig.max_retries for connecting (library default: 3)")
    p.add_argument("--deadline", type=float, default=180.0,
                   help="harness limit, seconds: report and exit 124 if the library has not "
                   "returned by then (default: 180)")
    return p.parse_args()


async def recognize(args: argparse.Namespace, run: _harness.Run) -> None:
    from funasr_client import AsyncFunASRClient, ClientConfig, RecognitionMode, SimpleCallback

    overrides = {}
    if args.chunk_size is not None:
        overrides["chunk_size"] = list(args.chunk_size)
    if args.chunk_interval is not None:
        overrides["chunk_interval"] = args.chunk_interval
    if args.hotwords:
        overrides["hotwords"] = dict(args.hotwords)
    if args.timeout is not None:
        overrides["timeout"] = args.timeout
    if args.max_retries is not None:
        overrides["max_retries"] = args.max_retries

    def record(kind: str):
        return lambda result: run.results.append({"kind": kind, **_harness.jsonable(result)})

    def on_error(error: BaseException) -> None:
        run.results.append({"kind": "error", "type": type(error).__name__, "error": str(error)})

    callback = SimpleCallback(on_partial=record("partial"), on_final=record("final"), on_error=on_error)
    # An explicit ClientConfig (as in the README) so that FUNASR_* environment variables, which
    # the library reads when no config is given, cannot change the run.
    config = ClientConfig(server_url=args.url, mode=RecognitionMode(args.mode), **overrides)
    client = AsyncFunASRClient(config=config)

    run.start()
    try:
        final = await client.recognize_file(args.wav, callback)
        run.out["text"] = final.text
        run.out["final"] = _harness.jsonable(final)
    except Exception as e:
        run.fail(e)
    finally:
        t = time.monotonic()
        try:
            await client.close()
        except Exception as e:
            if run.out["error"] is None:
                run.fail(e)
        run.out["close_seconds"] = round(time.monotonic() - t, 3)
        run.out["seconds"] = run.elapsed()


def main() -> None:
    args = parse_args()
    run = _harness.Run(LIBRARY, args.deadline)
    run.out["final"] = None
    try:
        _harness.isolate_library_import()
        asyncio.run(recognize(args, run))
    except BaseException as e:  # an import failure, or anything outside the library call
        if run.out["error"] is None:
            run.fail(e)
    run.finish()


if __name__ == "__main__":
    main()
