"""Preprocessing fit on the training split only, applied to anything, stored as plain JSON-able data.

Numeric columns: missing and infinite values filled with the column's training median (of its
finite values; 0 when there is none), log1p for heavy-tailed non-negative counts (decided on train),
then standard or min-max scaling with train statistics. With `numeric_bins=k`, each numeric column also gets a
piecewise-linear encoding over (up to) k quantile bins of the training values (Gorishniy et al., "On
Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS 2022): component t is 0 below
bin t, 1 above it and linear inside, which lets a small network cut a feature at many thresholds the
way tree ensembles do. With `frequent_values=k`, each numeric column with more than two training values
also gets an indicator for each of its k most frequent training values (those held by at least
`frequent_min_rows(rows)` training rows): flow generators and attack tools repeat exact sizes, TTLs and
counts (UNSW-NB15's `sttl` 254, a tool's fixed `sbytes`), which a tree isolates with two cuts and a
network can only bracket with bins. Categorical columns: one-hot over the most frequent training
values plus an "unknown" bucket, so a category never seen in training still scores.
The fitted state is a dict of lists and numbers: it travels inside checkpoints and ONNX artifacts and
loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from mstr.data.column_order import column_order
from mstr.data.table import FlowTable
from mstr.errors import ConfigError, DataError
from mstr.options import BINS_FROM, SCALERS

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 2: numeric gaps filled with training medians (`fill`); 3: frequent-value indicators


@dataclass
class FlowPreprocessor:
    """Fitted feature transform plus the class vocabulary. Build with `fit`, restore with `from_dict`."""

    numeric_cols: list[str]
    categorical_cols: list[str]
    log_cols: list[str]
    center: list[float]
    scale: list[float]
    categories: dict[str, list[str]]
    classes: list[str]
    benign: list[str]
    scaler: str = "standard"
    clip: float = 10.0
    version: int = FORMAT_VERSION
    fit_rows: int = 0
    fit_source: str = ""
    feature_names: list[str] = field(default_factory=list)
    bin_edges: dict[str, list[float]] = field(default_factory=dict)
    fill: list[float] = field(default_factory=list)  # per numeric column; empty in format 1
    column_order: list[str] = field(default_factory=list)
    frequent_values: dict[str, list[float]] = field(default_factory=dict)  # raw values, per numeric column

    @classmethod
    def fit(cls, table: FlowTable, scaler: str = "standard", max_categories: int = 32,
            log_skew: float = 2.0, clip: float = 10.0, numeric_bins: int = 0,
            bins_from: str = "quantile", frequent_values: int = 0, column_order: str = "data",
            seed: int = 0) -> "FlowPreprocessor":
        """`column_order`: where each column stands on the tokenizer's feature axis (`column_order.py`;
        `seed` shuffles it for "shuffled")."""
        if scaler not in SCALERS:
            raise ConfigError(f"data.scaler={scaler!r}: must be one of {list(SCALERS)}")
        if not isinstance(max_categories, int) or isinstance(max_categories, bool) or max_categories < 1:
            raise ConfigError(f"data.max_categories={max_categories!r}: must be an integer >= 1")
        if not isinstance(numeric_bins, int) or numeric_bins < 0 or numeric_bins == 1:
            raise ConfigError(f"data.numeric_bins={numeric_bins!r}: 0 (off) or the number of bins (>= 2)")
        if bins_from not in BINS_FROM:
            raise ConfigError(f"data.bins_from={bins_from!r}: must be one of {list(BINS_FROM)}")
        if not isinstance(frequent_values, int) or isinstance(frequent_values, bool) or frequent_values < 0:
            raise ConfigError(f"data.frequent_values={frequent_values!r}: 0 (off) or how many values per column (>= 1)")
        if len(table) == 0:
            raise DataError(f"{table.source}: the training split is empty")
        numeric = _numeric_matrix(table)
        fill = _finite_medians(numeric)
        numeric = _fill_gaps(numeric, fill, table.source, table.numeric_cols)
        order = _column_order(table, numeric, column_order, seed)
        frequent = {}
        if frequent_values:
            min_rows = frequent_min_rows(len(table))
            for j, col in enumerate(table.numeric_cols):
                values = _frequent(numeric[:, j], frequent_values, min_rows)
                if values:
                    frequent[col] = values
        log_mask = _heavy_tailed(numeric, log_skew)
        numeric = np.where(log_mask, np.log1p(np.maximum(numeric, 0.0)), numeric)
        if scaler == "standard":
            center, scale = numeric.mean(axis=0), numeric.std(axis=0)
        else:
            center, scale = numeric.min(axis=0), numeric.max(axis=0) - numeric.min(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        bin_edges = {}
        if numeric_bins:
            for j, col in enumerate(table.numeric_cols):
                edges = _bin_edges(numeric[:, j], table.labels, numeric_bins, bins_from)
                if len(edges) > 2:  # a constant or two-valued column gains nothing over its scaled value
                    bin_edges[col] = edges.tolist()
        categories = {}
        for col in table.categorical_cols:
            counts = table.frame[col].astype(str).value_counts()
            categories[col] = sorted(counts.index[:max_categories].tolist())
            if len(counts) > max_categories:  # the rest are one "unknown" category, as unseen values are
                log.info("%s: column %r has %s values; the %d most frequent are its categories, the other %s "
                         "(%.1f%% of training rows) share the unknown one (data.max_categories)", table.source, col,
                         f"{len(counts):,}", max_categories, f"{len(counts) - max_categories:,}",
                         100 * counts.iloc[max_categories:].sum() / counts.sum())
        prep = cls(
            numeric_cols=list(table.numeric_cols), categorical_cols=list(table.categorical_cols),
            log_cols=[c for c, m in zip(table.numeric_cols, log_mask) if m],
            center=center.tolist(), scale=scale.tolist(), categories=categories,
            classes=class_order(table), benign=[str(b) for b in table.benign], scaler=scaler, clip=clip,
            fit_rows=len(table), fit_source=table.source, bin_edges=bin_edges, fill=fill.tolist(),
            column_order=order,
            frequent_values=frequent,
        )
        prep.feature_names = prep._feature_names()
        return prep

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def benign_classes(self) -> int:
        """How many classes are benign: they come first (`class_order`), the attack classes after."""
        return sum(c in set(self.benign) for c in self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _feature_names(self) -> list[str]:
        names = list(self.numeric_cols)
        for col, edges in self.bin_edges.items():
            names += [f"{col}#bin{t}" for t in range(1, len(edges))]
        for col, values in self.frequent_values.items():
            names += frequent_names(col, values)
        for col in self.categorical_cols:
            names += [f"{col}={v}" for v in self.categories[col]] + [f"{col}=<unknown>"]
        return names

    def layout(self) -> dict:
        """Which flat positions form each column's token (its scaled value and bins, or its one-hot
        block), columns in the fitted `column_order` (the data's own by default: related columns stand
        together in flow records): what the backbone's per-column tokenizer needs, as plain data."""
        index = {name: i for i, name in enumerate(self.feature_names)}
        tokens = {}
        for col in self.numeric_cols:
            bins = [f"{col}#bin{t}" for t in range(1, len(self.bin_edges.get(col, [])))]
            derived = bins + frequent_names(col, self.frequent_values.get(col, []))
            tokens[col] = [index[col]] + [index[name] for name in derived]
        for col in self.categorical_cols:
            tokens[col] = [index[f"{col}={v}"] for v in self.categories[col]] + [index[f"{col}=<unknown>"]]
        order = [c for c in self.column_order if c in tokens] or list(tokens)
        order += [c for c in tokens if c not in order]
        return {"tokens": [tokens[c] for c in order], "names": order}

    def transform(self, table: FlowTable) -> np.ndarray:
        """Features as float32 [rows, num_features]; unseen categories land in the unknown bucket."""
        missing = [c for c in (*self.numeric_cols, *self.categorical_cols) if c not in table.frame.columns]
        if missing:
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            raise DataError(f"{table.source}: missing column(s) {missing[:8]}{more} that the model was trained on")
        numeric = _numeric_matrix(table, self.numeric_cols)
        numeric = _fill_gaps(numeric, self.fill, table.source, self.numeric_cols)
        raw = numeric
        log_mask = np.isin(self.numeric_cols, self.log_cols)
        numeric = np.where(log_mask, np.log1p(np.maximum(numeric, 0.0)), numeric)
        parts = [np.clip((numeric - np.asarray(self.center)) / np.asarray(self.scale), -self.clip, self.clip)]
        index = {c: j for j, c in enumerate(self.numeric_cols)}
        for col, edges in self.bin_edges.items():
            parts.append(piecewise_linear(numeric[:, index[col]], np.asarray(edges)))
        for col, values in self.frequent_values.items():
            parts.append(raw[:, index[col], None] == np.asarray(values))
        for col in self.categorical_cols:
            vocab = self.categories[col]
            codes = pd.Categorical(table.frame[col].astype(str), categories=vocab).codes
            codes = np.where(codes < 0, len(vocab), codes)  # -1 (unseen) -> unknown bucket
            parts.append(np.eye(len(vocab) + 1, dtype=np.float32)[codes])
        return np.concatenate(parts, axis=1).astype(np.float32)

    def outside_categories(self, table: FlowTable) -> dict[str, tuple[int, str]]:
        """{categorical column: (rows, an example value)} of the rows whose value is not among the column's
        fitted categories (never in training, or folded by `max_categories`): each is read as the unknown
        category, which a report should say (a new protocol or service in test traffic)."""
        found = {}
        for col in self.categorical_cols:
            values = table.frame[col].astype(str)
            outside = ~values.isin(self.categories[col]).to_numpy()
            if outside.any():
                found[col] = (int(outside.sum()), str(values[outside].iloc[0]))
        return found

    def encode_labels(self, table: FlowTable) -> np.ndarray:
        """Class indices; a label absent from training is an error (the model has no output for it)."""
        index = {c: i for i, c in enumerate(self.classes)}
        labels = table.labels
        codes = np.fromiter((index.get(v, -1) for v in labels), dtype=np.int64, count=len(labels))
        if (codes < 0).any():
            unknown = sorted(set(labels[codes < 0].tolist()))
            raise DataError(
                f"{table.source}: label(s) {unknown[:5]} never seen in training (classes: {self.classes}); "
                "use data.task=binary or add such flows to the training data"
            )
        return codes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> "FlowPreprocessor":
        version = int(state.get("version", -1))
        if version > FORMAT_VERSION:
            raise DataError(
                f"preprocessing format v{version} is newer than this mstr (v{FORMAT_VERSION}); upgrade mstr"
            )
        return cls(**state)


def class_order(table: FlowTable) -> list[str]:
    """The classes of a table's labels: the benign ones first (class 0), then the others, sorted."""
    found = sorted(set(table.labels.tolist()))
    benign = [c for c in found if c in set(table.benign)]
    return benign + [c for c in found if c not in benign]


def frequent_min_rows(rows: int) -> int:
    """How many training rows must hold a value for it to get an indicator: one in 2,500 (20 of
    UNSW-NB15's 49k training rows), at least 5, so an indicator never stands for a handful of rows."""
    return max(5, rows // 2500)


def frequent_names(col: str, values: list[float]) -> list[str]:
    return [f"{col}#is{np.format_float_positional(v, trim='-')}" for v in values]


def _frequent(values: np.ndarray, k: int, min_rows: int) -> list[float]:
    """The k most frequent values of one (training) column held by at least `min_rows` rows, ascending;
    none for a column of at most two distinct values (its scaled value already says which)."""
    unique, counts = np.unique(values, return_counts=True)
    if len(unique) <= 2:
        return []
    top = np.argsort(-counts, kind="stable")[:k]
    return sorted(float(unique[i]) for i in top if counts[i] >= min_rows)


def piecewise_linear(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[rows, len(edges) - 1]: how far each value has passed through each bin, in [0, 1]."""
    lower, width = edges[:-1], np.diff(edges)
    return np.clip((values[:, None] - lower) / width, 0.0, 1.0)


def _bin_edges(values: np.ndarray, labels: np.ndarray, bins: int, bins_from: str) -> np.ndarray:
    """Edges of `bins` bins of one (training) column: at its quantiles, or where a small decision tree
    on that column alone best separates the training labels (Gorishniy et al. 2022's target-aware
    bins: the cuts a tree ensemble would make, so a network gets the same resolution where it matters)."""
    if bins_from == "quantile":
        return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_leaf_nodes=bins, min_samples_leaf=max(1, len(values) // 1000), random_state=0)
    tree.fit(values[:, None], labels)
    cuts = tree.tree_.threshold[tree.tree_.feature >= 0]
    return np.unique(np.r_[values.min(), cuts, values.max()])


def _column_order(table: FlowTable, numeric: np.ndarray, rule: str, seed: int) -> list[str]:
    """The feature columns in the data's own order, rearranged by `rule` on these training rows."""
    columns = [c for c in table.frame.columns if c in set(table.feature_cols)]
    values = {c: numeric[:, j] for j, c in enumerate(table.numeric_cols)}
    categories = {c: table.frame[c].astype(str).to_numpy() for c in table.categorical_cols}
    return column_order(rule, columns, values, categories, seed)


def _numeric_matrix(table: FlowTable, cols: list[str] | None = None) -> np.ndarray:
    cols = table.numeric_cols if cols is None else cols
    try:
        return table.frame[cols].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{table.source}: non-numeric values in numeric columns ({err})") from None


def _finite_medians(values: np.ndarray) -> np.ndarray:
    """Per column, the median of its finite values (0 for a column without any)."""
    finite = np.where(np.isfinite(values), values, np.nan)
    empty = np.isnan(finite).all(axis=0)
    finite[:, empty] = 0.0
    return np.nanmedian(finite, axis=0)


def _fill_gaps(values: np.ndarray, fill, source: str, cols: list[str]) -> np.ndarray:
    """`values` with NaN/inf replaced by the fitted per-column `fill` (training medians)."""
    gaps = ~np.isfinite(values)
    if not gaps.any():
        return values
    if len(fill) != values.shape[1]:  # preprocessing of format 1 was fit on data the readers had filled
        row, col = np.argwhere(gaps)[0]
        raise DataError(f"{source}: row {row + 1}, column {cols[col]!r} is {values[row, col]}, and this "
                        "preprocessing (format 1) has no training medians to fill it; retrain the model")
    return np.where(gaps, np.asarray(fill, dtype=np.float64), values)


def _heavy_tailed(values: np.ndarray, threshold: float) -> np.ndarray:
    """Columns that are non-negative and strongly right-skewed: counts, bytes, durations."""
    nonneg = (values >= 0).all(axis=0)
    mean, std = values.mean(axis=0), values.std(axis=0)
    skew = np.where(std > 0, ((values - mean) ** 3).mean(axis=0) / np.maximum(std, 1e-12) ** 3, 0.0)
    return nonneg & (skew > threshold)
