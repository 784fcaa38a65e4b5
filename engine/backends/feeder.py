"""Keeps one vLLM engine full across stage batches: the engine's own step loop on a thread of its own, fed by
every stage call in the actor.

A stage actor for a vLLM stage takes several Ray Data batches at once (Resources.concurrent_calls, on threads);
each call hands its rows to the feeder and waits for its own. The feeder admits requests up to `max_in_flight`
into the engine and steps it while any run, so while one batch drains, rows of the next are already scheduled:
the engine never waits for a batch's longest sequence. Only the feeder's thread touches the engine (vLLM's
LLMEngine is not thread-safe). Rows keep their order within a call, and every row carries its own sampling
parameters (its seed), so its text does not depend on what shares the engine with it.

It also measures how full the engine was (Occupancy): the time-weighted number of requests in the engine while
any ran, and the time spent below half the target; the same figures up to the last admission, so the final
drain of a stage (unavoidable: nothing is left to admit) can be told apart. Nothing here imports vLLM: the
engine is any object with vLLM's LLMEngine methods `add_request`, `step` and `abort_request`."""

from __future__ import annotations

import itertools
import os
import re
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass


class EngineFailure(RuntimeError):
    """The engine stopped (vLLM's engine core died): no row of any stage call can finish. Not a row's fault, so
    the stage chain does not bisect the batch; the run stops with this message."""


@dataclass
class Occupancy:
    """How full one engine was: seconds with requests in it, their time-weighted count, seconds below half the
    target; `*_before_drain` the same up to the last admission of a request."""

    target: int
    busy_s: float = 0.0
    running_s: float = 0.0  # the integral of requests in the engine over busy time
    below_half_s: float = 0.0
    busy_before_drain_s: float = 0.0
    running_before_drain_s: float = 0.0
    below_half_before_drain_s: float = 0.0

    def add(self, running: int, seconds: float) -> None:
        if running <= 0 or seconds <= 0:
            return
        self.busy_s += seconds
        self.running_s += running * seconds
        if running < self.target / 2:
            self.below_half_s += seconds

    def admitted(self) -> None:
        """A request was just admitted: everything until now is before the final drain."""
        self.busy_before_drain_s = self.busy_s
        self.running_before_drain_s = self.running_s
        self.below_half_before_drain_s = self.below_half_s

    def snapshot(self) -> dict:
        return {"target": self.target, "busy_s": self.busy_s, "running_s": self.running_s,
                "below_half_s": self.below_half_s, "busy_before_drain_s": self.busy_before_drain_s,
                "running_before_drain_s": self.running_before_drain_s,
                "below_half_before_drain_s": self.below_half_before_drain_s}


class _Call:
    """One caller's requests: their outputs fill in as they finish; `done` is set when all have."""

    def __init__(self, count: int):
        self.outputs: list = [None] * count
        self.remaining = count
        self.done = threading.Event()
        if count == 0:
            self.done.set()


class EngineFeeder:
    """Admits callers' requests into one engine, at most `max_in_flight` at a time, and steps it on its own
    thread; `run(requests)` blocks until the caller's requests have finished and returns their outputs in order."""

    def __init__(self, engine, max_in_flight: int, name: str = "vllm", clock=time.monotonic, explain=None):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.engine, self.max_in_flight, self.name, self.clock = engine, max_in_flight, name, clock
        self.explain = explain or root_cause  # the engine's failure as one line
        self.occupancy = Occupancy(target=max_in_flight)
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._waiting: deque = deque()  # (request id, prompt, params) not yet admitted
        self._owners: dict[str, tuple[_Call, int]] = {}  # request id -> (its call, its position there)
        self._in_engine = 0
        self._failure: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"{name}-feeder", daemon=True)
        self._thread.start()

    def run(self, requests: list[tuple[dict, object]]) -> list:
        """Each (prompt, params) through the engine; their finished outputs, in the same order."""
        call = _Call(len(requests))
        with self._cond:
            self._raise_if_failed()
            for position, (prompt, params) in enumerate(requests):
                request_id = f"{self.name}-{next(self._ids)}"
                self._owners[request_id] = (call, position)
                self._waiting.append((request_id, prompt, params))
            self._cond.notify_all()
        call.done.wait()
        with self._cond:
            self._raise_if_failed()
        return call.outputs

    def snapshot(self) -> dict:
        """The occupancy so far, and the requests in the engine and waiting right now."""
        with self._cond:
            return {**self.occupancy.snapshot(), "in_engine": self._in_engine, "waiting": len(self._waiting)}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise EngineFailure(f"{self.name}: the vLLM engine stopped: {self.explain(self._failure)}") \
                from self._failure

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._closed and not self._waiting and self._in_engine == 0:
                        self._cond.wait()
                    if self._closed:
                        return
                    admit = []
                    while self._waiting and self._in_engine + len(admit) < self.max_in_flight:
                        admit.append(self._waiting.popleft())
                for request_id, prompt, params in admit:
                    self.engine.add_request(request_id, prompt, params)
                with self._cond:
                    self._in_engine += len(admit)
                    if admit:
                        self.occupancy.admitted()
                    running = self._in_engine
                began = self.clock()
                outputs = self.engine.step()
                finished = [out for out in outputs if out.finished]
                with self._cond:
                    self.occupancy.add(running, self.clock() - began)
                    for out in finished:
                        call, position = self._owners.pop(out.request_id)
                        call.outputs[position] = out
                        call.remaining -= 1
                        self._in_engine -= 1
                        if call.remaining == 0:
                            call.done.set()
        except BaseException as err:  # noqa: BLE001 - handed to every waiting caller, which raises EngineFailure
            with self._cond:
                self._failure = err
                for call, _ in self._owners.values():
                    call.done.set()
                self._owners.clear()
                self._waiting.clear()


def root_cause(err: BaseException) -> str:
    """The innermost exception of a chain, as `Type: message` (vLLM wraps its engine core's error)."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        nxt = err.__cause__ or err.__context__
        if nxt is None:
            break
        err = nxt
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


ENGINE_CORE_FATAL = "EngineCore encountered a fatal error"
_TAG = re.compile(r"\[[\w./-]+:\d+\]")  # vLLM's log header names the logging call: [core.py:1376]
_ERROR = re.compile(r"((?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception)): (.*)")


def logged_root_cause(log_text: str) -> str | None:
    """The exception the engine core logged last before it died (`RuntimeError: CPU Generator does not use
    offset`). vLLM's engine core runs in a process of its own and only logs its traceback (to the stdout it shares
    with the stage actor, every line under the same header); the client gets a bare EngineDeadError."""
    start = log_text.rfind(ENGINE_CORE_FATAL)
    if start < 0:
        return None
    line_start = log_text.rfind("\n", 0, start) + 1
    lines = log_text[line_start:].splitlines()
    tag = _TAG.search(lines[0])
    found = None
    for line in lines[1:]:
        if tag is not None and tag.group(0) not in line:
            break  # past the traceback the fatal-error call logged
        body = line[line.index(tag.group(0)) + len(tag.group(0)):] if tag else line
        match = _ERROR.match(body.strip())
        if match:
            found = f"{match.group(1)}: {match.group(2).strip()}"
    return found


def own_log_tail(limit: int = 1 << 16) -> str:
    """The end of this process's stdout and stderr where they are files (a Ray worker's logs; vLLM logs to
    stdout), else "" (a terminal or a pipe is never read)."""
    tails = []
    for fd in (1, 2):
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            with open(f"/proc/self/fd/{fd}", "rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - limit))
                tails.append(handle.read().decode("utf-8", "replace"))
        except OSError:
            continue
    return "\n".join(tails)
