"""Streaming detection: per-host window context in bounded memory, a bounded input queue, verdicts.

    reader thread: lines / pcap flows -> parse -> bounded queue  (full: drop and count, or wait)
    scoring loop:  drain up to `batch_size` records -> encode -> windows -> model -> verdicts

Windows are the causal windows of training (`mstr/data/windows.py`): a flow's window is the flow and
up to `window - 1` earlier flows of the same group (the source host), oldest first, zero rows where the
group has no earlier flow. Training orders a group's flows by time; a stream takes them in arrival
order, which is the same for a time-ordered log. Context is kept for at most `max_groups` hosts (least
recently seen evicted first), so memory stays bounded on any traffic.

A flow is an attack when its attack score, 1 - P(benign classes), exceeds the artifact's threshold
(0.5 unless tuned on validation); its class is then the most likely attack class, else the most likely
benign one.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Optional

import numpy as np

from mstr.deploy.features import BadRecord, FeatureEncoder, Record
from mstr.deploy.runtime import Scorer
from mstr.deploy.sources import LineParser, NewFile
from mstr.errors import DataError

log = logging.getLogger("mstr.detect")
MAX_LOGGED_BAD = 20  # bad lines logged each; after them one a WARNING_EVERY_S, with the count so far
WARNING_EVERY_S = 10.0  # a warning repeated while its cause lasts (drops, bad lines): at most this often
_END = object()


class WindowContext:
    """The last `window - 1` encoded flows of each of up to `max_groups` groups, and the newest time of
    each: a flow that arrives earlier than its group's newest flow so far is counted (`out_of_order`),
    since training sorted each group's flows by time and gave it other context. Times written as
    numbers (Unix time, Zeek's ts, NFStream's ms) or ISO 8601 dates (the corrected CIC-IDS2017
    `Timestamp`) are compared; other date texts (day-first CICFlowMeter dates) are not."""

    def __init__(self, window: int, num_features: int, max_groups: int = 100_000):
        self.window, self.num_features, self.max_groups = window, num_features, max_groups
        self.groups: OrderedDict[Any, deque] = OrderedDict()
        self.newest: dict[Any, float] = {}
        self.evicted = self.out_of_order = 0

    def windows(self, features: np.ndarray, groups: list, times: Optional[list] = None) -> np.ndarray:
        """[n, window, features]: each flow's window, the flows taken in order (earlier ones of the
        same batch are context of later ones)."""
        out = np.zeros((len(features), self.window, self.num_features), dtype=np.float32)
        if self.window == 1:
            out[:, 0] = features
            return out
        for i, (row, group) in enumerate(zip(features, groups)):
            history = self.groups.get(group)
            if history is None:
                history = self.groups[group] = deque(maxlen=self.window - 1)
                if len(self.groups) > self.max_groups:
                    self.newest.pop(self.groups.popitem(last=False)[0], None)
                    self.evicted += 1
            else:
                self.groups.move_to_end(group)
            if times is not None and (when := _seconds(times[i])) is not None:
                if when < self.newest.get(group, when):
                    self.out_of_order += 1
                else:
                    self.newest[group] = when
            if history:
                out[i, self.window - 1 - len(history):-1] = np.stack(history)
            out[i, -1] = row
            history.append(row)
        return out


def _seconds(time: Any) -> Optional[float]:
    """A time written as a number (or a number), or an ISO 8601 date text, as float seconds; None for
    another date text or no time. ISO dates count: the shared CIC-IDS2017 files, the one real windowed
    dataset, write them and are not in time order, so their flows would go uncounted. A date without
    an offset is read as UTC, as training's reader reads it."""
    try:
        return float(time)
    except (TypeError, ValueError):
        pass
    try:
        stamp = datetime.fromisoformat(time)
    except (TypeError, ValueError):
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()


@dataclass
class Verdict:
    flow: int
    time: Any
    id: dict
    cls: str
    score: float
    alert: bool

    def to_json(self) -> dict:
        # By hand: `dataclasses.asdict` deep-copies and took a tenth of `mstr.detect`'s time on KDDTest+.
        return {"flow": self.flow, "time": as_number(self.time), "id": {k: as_number(v) for k, v in self.id.items()},
                "class": self.cls, "score": self.score, "alert": self.alert}


def as_number(value: Any) -> Any:
    """A number written as text (a port, a protocol number, a Unix time) as that number, so that a field
    of the alerts has one JSON type whatever the input: NFStream flows give numbers, lines give texts.
    Anything else (an address, a flow id, a date) stays as it is."""
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


class Detector:
    """Scores batches of records in arrival order with a model (`Scorer`) and an artifact spec."""

    def __init__(self, scorer: Scorer, spec: dict, max_groups: int = 100_000):
        self.scorer, self.spec = scorer, spec
        self.encoder = FeatureEncoder(spec["preprocessor"])
        self.classes = list(spec["classes"])
        benign = set(spec["benign"])
        self.benign = np.array([c in benign for c in self.classes])
        self.threshold = float(spec["threshold"])
        self.context = WindowContext(int(spec["window"]), self.encoder.num_features, max_groups)

    def probabilities(self, records: list[Record]) -> np.ndarray:
        features = self.encoder.encode(np.stack([r.numeric for r in records]), [r.categories for r in records])
        return self.scorer(self.context.windows(features, [r.group for r in records], [r.time for r in records]))

    def verdicts(self, records: list[Record]) -> list[Verdict]:
        probs = self.probabilities(records)
        attack = 1.0 - probs[:, self.benign].sum(axis=1)
        alert = attack > self.threshold
        best_attack = np.where(self.benign, -1.0, probs).argmax(axis=1)
        best_benign = np.where(self.benign, probs, -1.0).argmax(axis=1)
        cls = np.where(alert, best_attack, best_benign)
        return [Verdict(r.seq, r.time, r.ident, self.classes[c], float(s), bool(a))
                for r, c, s, a in zip(records, cls, attack, alert)]


@dataclass
class Summary:
    received: int = 0  # input items: lines (headers included) or pcap flows
    headers: int = 0  # header and comment lines: not flows
    refused_at: Optional[int] = None  # the item where the input was refused: none after it was read as a flow
    scored: int = 0
    dropped: int = 0
    bad: int = 0
    alerts: int = 0
    repaired_values: int = 0
    groups_evicted: int = 0
    unseen_categories: int = 0  # flows holding a category value outside training's (new, or folded: max_categories)
    out_of_order: int = 0  # flows earlier than their host's newest flow so far (windowed models)
    unseen_examples: dict = field(default_factory=dict)  # {column: the first such value}
    seconds: float = 0.0
    busy_seconds: float = 0.0  # of which parsing, scoring and writing (the rest: waiting for input)
    started: float = field(default_factory=time.perf_counter)

    @property
    def seen(self) -> int:
        read = self.received if self.refused_at is None else min(self.received, self.refused_at - 1)
        return read - self.headers

    @property
    def unscored(self) -> int:
        """Flows read but neither scored, dropped nor bad: queued when the run was stopped."""
        return max(0, self.seen - self.scored - self.dropped - self.bad)

    @property
    def flows_per_s(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"flows seen {self.seen:,}, scored {self.scored:,}, dropped {self.dropped:,}, bad {self.bad:,}, "
                f"alerts {self.alerts:,}, {self.flows_per_s:,.0f} flows/s over {self.seconds:.2f} s"
                + (f" ({self.scored / self.busy_seconds:,.0f} flows/s while scoring: the rest waited for input)"
                   if self.scored and 0 < self.busy_seconds < 0.5 * self.seconds else "")
                + (f", {self.unscored:,} read but not scored (stopped)" if self.unscored else "")
                + (f", {self.repaired_values:,} missing values repaired" if self.repaired_values else "")
                + (f", {self.groups_evicted:,} host contexts evicted" if self.groups_evicted else "")
                # not "unseen": a value too rare in training for a category of its own (data.max_categories)
                # lands there too, e.g. UNSW-NB15's proto 'igmp', on 20 training rows
                + (f", {self.unseen_categories:,} flow(s) with a category value outside training's categories "
                   "(new, or too rare there: data.max_categories; e.g. "
                   + ", ".join(f"{c} {v!r}" for c, v in list(self.unseen_examples.items())[:3])
                   + "; scored as its unknown category)" if self.unseen_categories else "")
                + (f", {self.out_of_order:,} flow(s) out of time order (earlier than their host's newest flow so far: "
                   "their window context is not training's time-sorted one)" if self.out_of_order else ""))

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("started", "received", "headers", "refused_at")}
        out.update(seen=self.seen, unscored=self.unscored, flows_per_s=self.flows_per_s)
        return out


class FlowQueue:
    """The bounded FIFO between the reader thread and the scoring loop. Built on `queue.SimpleQueue`
    (C, no Python-level locks): `queue.Queue` takes a lock and notifies a condition on every put and
    every get, about 3 µs a flow, a fifth of a detector's time on KDDTest+ lines. It stays bounded by a
    size check before each put: with one reader, the size it sees can only shrink before the put lands.
    A reader that must wait for room naps 1 ms at a time (the scoring loop drains dozens of flows a
    millisecond), and the scoring loop takes everything queued, up to a batch, at once."""

    def __init__(self, maxsize: int):
        self.items: queue.SimpleQueue = queue.SimpleQueue()
        self.maxsize = maxsize

    def offer(self, item: Any) -> bool:
        """Queue `item` unless the queue is full; False when it was not queued."""
        if self.items.qsize() >= self.maxsize:
            return False
        self.items.put(item)
        return True

    def put(self, item: Any, stop: threading.Event) -> None:
        """Queue `item`, waiting for room (no longer once `stop` is set: the scoring loop has ended)."""
        while self.items.qsize() >= self.maxsize and not stop.is_set():
            time.sleep(0.001)
        self.items.put(item)

    def take(self, most: int, cancelled: Callable[[], bool] = lambda: False) -> list:
        """1 to `most` items, oldest first, waiting for the first; none once `cancelled()`. Waits in
        short slices: the OS may hand SIGINT to another thread (the reader, a runtime's worker), and
        only a main thread that wakes up runs Python's handler, so a blocking get on an idle stream
        (`--follow`) would never see the interrupt."""
        while True:
            try:
                batch = [self.items.get(timeout=0.2)]
                break
            except queue.Empty:
                if cancelled():
                    return []
        get = self.items.get_nowait
        try:
            while len(batch) < most:
                batch.append(get())
        except queue.Empty:
            pass
        return batch


class StreamRunner:
    """Runs one input through a `Detector`. A reader thread only moves input items (lines, pcap flows)
    into a bounded queue; the caller's thread parses, scores and emits, so the queue fills exactly when
    detection is slower than arrival. `block=True` (the default) then makes the reader wait, and with it
    the input; `block=False` drops the newest item, for a feed that must never wait. Header and comment
    lines, also a header repeated mid-stream, are never dropped.
    A verdict's `flow` is the item's position in the input: its line number, or the n-th pcap flow (in
    a followed log that was rotated, the count goes on across its files)."""

    def __init__(self, detector: Detector, parser: LineParser, emit: Callable[[Verdict], None],
                 queue_size: int = 10_000, batch_size: int = 256, block: bool = True, write_all: bool = False,
                 warn_drops: bool = True):
        self.detector, self.parser, self.emit = detector, parser, emit
        self.warn_drops, self._last_drop_warning = warn_drops, -math.inf
        self._last_bad_warning = time.monotonic()  # the first bad lines are logged each (MAX_LOGGED_BAD)
        self.queue = FlowQueue(queue_size)
        self.batch_size, self.block, self.write_all = batch_size, block, write_all
        self.summary = Summary()
        self.stop = threading.Event()
        self.error: Optional[BaseException] = None
        self.stop_signal: Optional[int] = None  # set by `request_stop`

    def request_stop(self, signum: int) -> None:
        """Stop after the batch in hand is scored and written (a signal handler's call): stopping
        between a verdict written and counted would leave the summary off by one."""
        self.stop_signal = signum

    def _warn_drops(self) -> None:
        """Say so when flows start to be dropped, and how many every `WARNING_EVERY_S` while they are: a
        detector left running (`--follow`) would otherwise tell only at its end."""
        now = time.monotonic()
        if self.warn_drops and now - self._last_drop_warning >= WARNING_EVERY_S:
            self._last_drop_warning = now
            log.warning("queue full: %s flow(s) dropped so far (detection is slower than the input; --on-full block "
                        "makes the input wait instead)", f"{self.summary.dropped:,}")

    def _read(self, items: Iterable) -> None:
        s = self.summary
        fresh = True  # the next line may be a header: the input's first line, or a new file's
        try:
            for item in items:
                if self.stop.is_set():
                    break
                if isinstance(item, NewFile):  # not a flow: never dropped, never counted
                    self.queue.put((s.received, item), self.stop)
                    fresh = True
                    continue
                s.received += 1
                header = isinstance(item, str) and (fresh or item.startswith("#"))
                fresh = False
                if self.block or header:
                    self.queue.put((s.received, item), self.stop)
                elif not self.queue.offer((s.received, item)):
                    if isinstance(item, str) and self.parser.may_be_header(item):  # `cat a.csv b.csv`: b's
                        self.queue.put((s.received, item), self.stop)  # columns name the lines after it
                        continue
                    s.dropped += 1
                    self._warn_drops()
        except BaseException as err:  # e.g. an unreadable input: the scoring loop re-raises it
            self.error = err
        finally:
            self.queue.put(_END, self.stop)

    def run(self, items: Iterable) -> Summary:
        """Score everything `items` yields (lines or flow dicts); returns the summary. A stop asked for
        (`request_stop`) raises KeyboardInterrupt(signal number) between batches, with the summary up
        to date for the caller to print."""
        s = self.summary
        s.started = time.perf_counter()
        reader = threading.Thread(target=self._read, args=(items,), name="mstr-reader", daemon=True)
        reader.start()
        try:
            done = False
            while not done:
                if self.stop_signal is not None:
                    raise KeyboardInterrupt(self.stop_signal)
                batch = self.queue.take(self.batch_size, lambda: self.stop_signal is not None)
                if not batch:
                    continue
                if batch[-1] is _END:
                    batch.pop()
                    done = True
                begun = time.perf_counter()
                records, refused = self._parse(batch)
                if records:
                    self._score(records)
                s.busy_seconds += time.perf_counter() - begun
                s.seconds = time.perf_counter() - s.started
                if refused is not None:
                    raise refused
        finally:
            self.stop.set()
            s.seconds = time.perf_counter() - s.started
            s.groups_evicted, s.out_of_order = self.detector.context.evicted, self.detector.context.out_of_order
            s.unseen_categories, s.unseen_examples = self.detector.encoder.unseen, self.detector.encoder.unseen_examples
        if self.error is not None:
            raise self.error
        return s

    def _parse(self, batch: list[tuple[int, Any]]) -> tuple[list[Record], Optional[DataError]]:
        """The batch's records, and the error that refused the input within it (None if it was not)."""
        s = self.summary
        records = []
        for (seq, item), outcome in zip(batch, self.parser.parse_many(batch)):
            if isinstance(outcome, DataError):
                s.refused_at = seq
                return records, outcome
            if isinstance(outcome, BadRecord):
                s.bad += 1
                if s.bad <= MAX_LOGGED_BAD:
                    log.warning("line %d: %s; skipped%s", seq, outcome, f" (further bad lines: one every "
                                f"{WARNING_EVERY_S:.0f} s, with the count)" if s.bad == MAX_LOGGED_BAD else "")
                elif time.monotonic() - self._last_bad_warning >= WARNING_EVERY_S:
                    self._last_bad_warning = time.monotonic()
                    log.warning("line %d: %s; skipped (%s bad lines so far)", seq, outcome, f"{s.bad:,}")
            elif outcome is None:
                s.headers += not isinstance(item, NewFile)
            else:
                s.repaired_values += outcome.repaired
                records.append(outcome)
        return records, None

    def _score(self, batch: list[Record]) -> None:
        for verdict in self.detector.verdicts(batch):
            if verdict.alert or self.write_all:
                self.emit(verdict)  # counted once written: a stop in between leaves the counts true
            self.summary.scored += 1
            self.summary.alerts += verdict.alert
