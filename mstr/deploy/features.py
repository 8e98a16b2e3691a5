"""The fitted preprocessing of an artifact, applied to single flow records with numpy only.

It is the JSON form of `mstr.data.preprocessing.FlowPreprocessor` (fit on the training split) and does
the same arithmetic in the same order (log1p of heavy-tailed counts, scaling, clipping, piecewise-linear
bins, frequent-value indicators, one-hot with an unknown bucket), so a record scores exactly as the
same row did in training; export checks that on real rows and `tests/test_deploy.py` on random ones.
Kept apart from `FlowPreprocessor` so that a deployed detector needs no pandas.

Missing or infinite numbers in a live record get the column's training median, as every split did in
training (`fill`), and are counted as repaired; preprocessing fitted before medians were kept (format 1)
gives them the training mean (0 after scaling).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import numpy as np

CLIP = 1e12  # as mstr.data.readers: larger magnitudes are counter garbage
# The texts that mean "no value", lower-cased: one list for the training readers (mstr.data) and this
# encoder, so that a file is read alike in both. A number column knows more spellings than a category
# column, where "null" or "n/a" may be a real value and training keeps them as categories.
MISSING_NUMBER = ("", "nan", "-nan", "+nan", "na", "n/a", "null", "none", "-", "(empty)")
MISSING_CATEGORY = ("", "-", "(empty)", "nan", "none")
_WHOLE_FLOAT = re.compile(r"^-?\d+\.0+$")
_PLAIN = {str, int, float}  # values numpy converts as `float()` would (not bools, bytes or None)


class BadRecord(ValueError):
    """A record that cannot be scored (a non-number in a numeric column, too few fields, ...)."""


@dataclass
class Record:
    """One parsed flow: raw numeric values (NaN where missing), category texts, its window group and
    what identifies it in alerts."""

    seq: int
    numeric: np.ndarray
    categories: list[str]
    group: Optional[str]
    time: Any
    ident: dict
    repaired: int = 0


class FeatureEncoder:
    """`FlowPreprocessor.transform` for arrays of parsed records (see the module doc)."""

    def __init__(self, prep: Mapping[str, Any]):
        self.numeric_cols = list(prep["numeric_cols"])
        self.categorical_cols = list(prep["categorical_cols"])
        self.log_mask = np.isin(self.numeric_cols, list(prep["log_cols"]))
        self.center = np.asarray(prep["center"], dtype=np.float64)
        self.scale = np.asarray(prep["scale"], dtype=np.float64)
        self.clip = float(prep["clip"])
        fill = prep.get("fill") or []
        self.fill = np.asarray(fill, dtype=np.float64) if len(fill) == len(self.numeric_cols) else None
        index = {c: j for j, c in enumerate(self.numeric_cols)}
        # Every column's bins (and frequent values) laid end to end, in feature order: one array
        # operation encodes them all, where a loop over columns cost a detector a tenth of its time.
        bins = [(index[c], np.asarray(e, dtype=np.float64)) for c, e in dict(prep.get("bin_edges", {})).items()]
        self.bin_cols = np.array([j for j, e in bins for _ in e[1:]], dtype=np.int64)
        self.bin_lower = np.concatenate([e[:-1] for _, e in bins]) if bins else np.zeros(0)
        self.bin_width = np.concatenate([np.diff(e) for _, e in bins]) if bins else np.zeros(0)
        frequent = [(index[c], np.asarray(v, dtype=np.float64)) for c, v in dict(prep.get("frequent_values", {})).items()]
        self.frequent_cols = np.array([j for j, v in frequent for _ in v], dtype=np.int64)
        self.frequent_values = np.concatenate([v for _, v in frequent]) if frequent else np.zeros(0)
        self.vocab = [{v: i for i, v in enumerate(prep["categories"][c])} for c in self.categorical_cols]
        self.num_features = len(prep["feature_names"])
        # Rows encoded holding a category value outside training's categories (never seen, or folded
        # by max_categories; scored as the column's unknown category, as training scored such test
        # rows), and the first such value of each column: a detector's summary says how much traffic
        # the model has no category for.
        self.unseen, self.unseen_examples = 0, {}

    def encode(self, numeric: np.ndarray, categories: list[list[str]]) -> np.ndarray:
        """float32 [rows, num_features] from raw numbers [rows, numeric cols] (NaN: missing) and one
        list of category texts per row."""
        rows, k = len(categories), len(self.numeric_cols)
        numeric = np.asarray(numeric, dtype=np.float64).reshape(rows, k)
        if self.fill is not None:
            numeric = np.where(np.isnan(numeric), self.fill, numeric)  # training's medians, as training filled
        raw = numeric
        numeric = np.where(self.log_mask, np.log1p(np.maximum(numeric, 0.0)), numeric)
        scaled = np.clip((numeric - self.center) / self.scale, -self.clip, self.clip)
        out = np.zeros((rows, self.num_features), dtype=np.float32)
        out[:, :k] = np.where(np.isnan(scaled), 0.0, scaled)  # format 1 (no medians): the training mean
        if len(self.bin_cols):
            passed = np.clip((numeric[:, self.bin_cols] - self.bin_lower) / self.bin_width, 0.0, 1.0)
            out[:, k:k + len(self.bin_cols)] = np.nan_to_num(passed)
            k += len(self.bin_cols)
        if len(self.frequent_cols):  # a missing (NaN) value is none of them
            out[:, k:k + len(self.frequent_cols)] = raw[:, self.frequent_cols] == self.frequent_values
            k += len(self.frequent_cols)
        at = np.arange(rows)
        unseen = np.zeros(rows, dtype=bool)
        for c, vocab in enumerate(self.vocab):
            codes = np.fromiter((vocab.get(row[c], len(vocab)) for row in categories), dtype=np.int64, count=rows)
            new = codes == len(vocab)
            if new.any():
                unseen |= new
                self.unseen_examples.setdefault(self.categorical_cols[c], categories[int(new.argmax())][c])
            out[at, k + codes] = 1.0
            k += len(vocab) + 1
        self.unseen += int(unseen.sum())
        return out

    def parse(self, values: Mapping[str, Any], seq: int, group_col: Optional[str], time_col: Optional[str],
              ident_cols: list[str], clean_categories: bool) -> Record:
        """A `Record` from one flow's raw column values (texts or numbers)."""
        numeric, repaired = repair(self._numbers(values)[None])
        return self.record(seq, numeric[0], int(repaired[0]), [_get(values, col) for col in self.categorical_cols],
                           category(values.get(group_col), True) if group_col else None,
                           values.get(time_col) if time_col else None,
                           {c: values[c] for c in ident_cols if c in values}, clean_categories)

    @staticmethod
    def record(seq: int, numeric: np.ndarray, repaired: int, categories: list, group: Optional[str], time: Any,
               ident: dict, clean_categories: bool) -> Record:
        """A `Record` from repaired numbers (see `repair`) and the raw texts of its category columns."""
        return Record(seq, numeric, [category(v, clean_categories) for v in categories], group, time, ident,
                      repaired)

    def _numbers(self, values: Mapping[str, Any]) -> np.ndarray:
        """The numeric columns' raw values as floats (NaN where missing). A line of plain number texts
        (nearly every line) converts in one numpy call: converting them one by one was most of
        `mstr.detect`'s parsing time on KDDTest+ (26k -> 35k flows/s end to end). Anything else
        (missing tokens, numbers that are not texts, garbage) takes the careful path, value by value,
        with its per-column errors."""
        try:
            texts = [values[col] for col in self.numeric_cols]
            if set(map(type, texts)) <= _PLAIN:
                return np.array(texts, dtype=np.float64)
        except (KeyError, ValueError, OverflowError):
            pass
        return np.array([_number(_get(values, col), col) for col in self.numeric_cols], dtype=np.float64)


class NumberTexts(dict):
    """Number text -> float, remembered. Flow logs repeat a few thousand number texts ("0", "0.00",
    "80", "255"), and looking one up costs about a quarter of parsing it (converting each line's numbers
    with numpy was most of `mstr.detect`'s time). Cleared past `limit` texts: memory stays bounded."""

    def __init__(self, limit: int = 100_000):
        super().__init__()
        self.limit = limit

    def __missing__(self, text: str) -> float:
        value = self[text] = float(text)
        return value

    def table(self, texts: Iterable[str], rows: int) -> Optional[np.ndarray]:
        """float64 [rows, cols] of `rows` rows of number texts given row after row; None when any is not
        a plain number (a missing token, garbage), for the careful path."""
        if len(self) > self.limit:
            self.clear()
        try:
            return np.fromiter(map(self.__getitem__, texts), dtype=np.float64).reshape(rows, -1)
        except ValueError:
            return None


class CategoryTexts(dict):
    """Raw category text -> the text training saw (`category`), remembered: flow logs repeat a few
    protocols, services and flags (and hosts), and cleaning each value on its own was a fifth of
    parsing a KDD line. Cleared past `limit` texts: memory stays bounded."""

    def __init__(self, clean: bool, limit: int = 100_000):
        super().__init__()
        self.clean, self.limit = clean, limit

    def __missing__(self, text: str) -> str:
        value = self[text] = category(text, self.clean)
        return value

    def bound(self) -> "CategoryTexts":
        if len(self) > self.limit:
            self.clear()
        return self


def repair(numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw numbers [rows, cols] as training's reader leaves them: missing and infinite values NaN (they
    get the training median in `encode`), magnitudes clipped at CLIP; and how many values of each row were
    missing or infinite."""
    if not numeric.size or np.abs(numeric).max() <= CLIP:  # NaN compares false: the careful step runs
        return numeric, np.zeros(len(numeric), dtype=np.int64)  # only when a value is missing or huge
    finite = np.isfinite(numeric)
    return np.where(finite, np.clip(numeric, -CLIP, CLIP), math.nan), (~finite).sum(axis=1)


def _get(values: Mapping[str, Any], col: str) -> Any:
    try:
        return values[col]
    except KeyError:
        raise BadRecord(f"no column {col!r}") from None


def _number(value: Any, col: str) -> float:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip() if value is not None else ""
    if text.lower() in MISSING_NUMBER:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise BadRecord(f"column {col!r} holds {text[:40]!r}, not a number") from None


def cleans_categories(source: Mapping[str, Any]) -> bool:
    """Whether the training reader read missing tokens ("-", "(empty)", ...) in category columns as "":
    the artifact's input spec says so; one written before it did is read by the rule of its time
    (every format but NSL-KDD's)."""
    return bool(source.get("clean_categories", source["format"] != "nsl_kdd"))


def category(value: Any, clean: bool) -> str:
    """Category text as the training reader left it: stripped; for flow logs also missing tokens as
    "" and whole numbers without their ".0" (a protocol 6 read as 6.0 from a column with gaps)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not clean:
        return text
    if text.lower() in MISSING_CATEGORY:
        return ""
    return text.split(".")[0] if _WHOLE_FLOAT.match(text) else text
