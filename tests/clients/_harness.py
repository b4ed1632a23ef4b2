"""Shared plumbing for the FunASR client drivers in this folder (standard library only).

Each driver prints exactly one JSON object on stdout:
    {"library", "text", "results", "error", "seconds", ...}
and exits 0 when the library finished without raising, 1 when it raised, 124 when the harness
deadline (--deadline) ran out first. Anything the library prints or logs goes to stderr.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
DEADLINE_EXIT = 124


def hotword(pair: str) -> tuple[str, int]:
    """An argparse type: WORD:WEIGHT."""
    import argparse

    word, sep, weight = pair.rpartition(":")
    if not sep or not word:
        raise argparse.ArgumentTypeError(f"expected WORD:WEIGHT, got {pair!r}")
    return word, int(weight)


def add_server_arguments(p) -> None:
    """The arguments every driver takes: where the server is and the FunASR mode."""
    p.add_argument("--url", required=True, help="server URL, e.g. ws://127.0.0.1:PORT/")
    p.add_argument("--mode", required=True, choices=["offline", "online", "2pass"])


def isolate_library_import() -> None:
    """Drop this folder from sys.path: `funasr_client.py` here would shadow the installed
    `funasr_client` package that both drivers import."""
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    sys.modules.pop("funasr_client", None)


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class Run:
    """The JSON report, the wall clock, and a watchdog that reports and exits at the deadline."""

    def __init__(self, library: str, deadline: float) -> None:
        self.out: dict[str, Any] = {
            "library": library,
            "text": None,
            "results": [],
            "error": None,
            "seconds": None,
        }
        self._stdout = sys.stdout
        self._lock = threading.Lock()
        self._t0: float | None = None
        # Whatever the library prints must not corrupt the one JSON object on stdout.
        sys.stdout = sys.stderr
        try:
            self._stdout.reconfigure(encoding="utf-8")  # type: ignore[attr-defined]
        except Exception:
            pass
        timer = threading.Timer(deadline, self._deadline, args=(deadline,))
        timer.daemon = True
        timer.start()

    @property
    def results(self) -> list:
        return self.out["results"]

    def start(self) -> None:
        self._t0 = time.monotonic()

    def elapsed(self) -> float | None:
        return None if self._t0 is None else round(time.monotonic() - self._t0, 3)

    def fail(self, exc: BaseException) -> None:
        self.out["error"] = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"

    def _deadline(self, deadline: float) -> None:
        if self.out["error"] is None:
            self.out["error"] = f"harness deadline: the library had not returned after {deadline:g} s"
        self.finish(DEADLINE_EXIT)

    def finish(self, code: int | None = None) -> None:
        """Print the report once and exit at once (threads the library left behind, stuck or
        not, must not keep the process alive)."""
        with self._lock:
            if self.out["seconds"] is None:
                self.out["seconds"] = self.elapsed()
            if code is None:
                code = 0 if self.out["error"] is None else 1
            self._stdout.write(json.dumps(jsonable(self.out), ensure_ascii=False) + "\n")
            self._stdout.flush()
            sys.stderr.flush()
            os._exit(code)
