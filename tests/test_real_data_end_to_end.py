"""Each real data config, end to end on a small slice of the shared files: a distilled student trains
(its teacher first), `mstr.evaluate` rescores the saved checkpoint to the same numbers, and
`mstr.baselines` scores peers on the same splits."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import CIC_SLICE, write_cic_slice
from mstr.config import compose_config

pytestmark = pytest.mark.slow
TINY_TRAINING = ["trainer.max_epochs=3", "trainer.limit_train_batches=25", "trainer.limit_val_batches=5",
                 "trainer.enable_progress_bar=false", "logger=csv", "data.batch_size=64"]


def _head_lines(src: Path, dst: Path, n: int) -> None:
    with gzip.open(src, "rt") as fh:
        dst.write_text("".join(next(fh) for _ in range(n)))


@pytest.fixture(scope="module")
def sliced_root(tmp_path_factory, data_dir) -> Path:
    """A data root in the shared layout holding a few thousand real rows of each dataset."""
    root = tmp_path_factory.mktemp("real_slices")
    (root / "nsl_kdd").mkdir()
    _head_lines(data_dir / "nsl_kdd" / "KDDTrain+_20Percent.txt.gz", root / "nsl_kdd" / "KDDTrain+_20Percent.txt", 3000)
    _head_lines(data_dir / "nsl_kdd" / "KDDTest+.txt.gz", root / "nsl_kdd" / "KDDTest+.txt", 1500)
    # the UNSW file is sorted by attack category: a random sample keeps every class
    (root / "unsw_nb15").mkdir()
    unsw = pd.read_csv(data_dir / "unsw_nb15" / "UNSW_NB15_training-set.csv.gz", encoding="utf-8-sig")
    unsw.sample(4000, random_state=0).to_csv(root / "unsw_nb15" / "UNSW_NB15_training-set.csv.gz", index=False)
    write_cic_slice(data_dir, root)  # multi-class here reproduces the DDoS validation-carve bug
    # a user's own CICFlowMeter exports for data=flows: earlier flows of each class to train on (gzipped),
    # later ones to test on. (A single global time cut of this per-class sample would test on attacks
    # the training split never saw: the flows loader is right to cut globally, the sample is not.)
    (root / "mine").mkdir()
    frames = [pd.read_csv(p).sort_values("Timestamp") for p in sorted((root / "cic_ids2017_improved").glob("*.csv"))]
    pd.concat(f.head(int(len(f) * 0.7)) for f in frames).to_csv(root / "mine" / "train.csv.gz", index=False)
    pd.concat(f.tail(len(f) - int(len(f) * 0.7)) for f in frames).to_csv(root / "mine" / "later.csv", index=False)
    return root


TRAIN_SOURCE_ROWS = {"data=nsl_kdd": 3000, "data=unsw_nb15": 4000, "data=cic_ids2017": sum(CIC_SLICE.values()),
                     "data=flows": int(sum(CIC_SLICE.values()) * 0.7) + 1}
DATA_CONFIGS = {
    "nsl_kdd": ["data=nsl_kdd", "data.variant=20percent"],
    "unsw_nb15": ["data=unsw_nb15"],
    "cic_ids2017": ["data=cic_ids2017"],
    "cic_ids2017_multiclass": ["data=cic_ids2017", "data.task=multiclass", "data.context_swap=0.3"],
    "flows": ["data=flows", "data.path={root}/mine/train.csv.gz", "data.test_path={root}/mine/later.csv"],
}


@pytest.mark.parametrize("name", list(DATA_CONFIGS))
def test_train_evaluate_and_baselines(name, sliced_root, tmp_path):
    from mstr.baselines import run as run_baselines
    from mstr.evaluate import run as run_evaluate
    from mstr.train import run as run_train
    from mstr.training.checkpoint import load_classifier

    data = [arg.format(root=sliced_root) for arg in DATA_CONFIGS[name]]
    common = [f"paths.data_dir={sliced_root}", *data]
    trained = run_train(compose_config("train", [
        f"paths.output_dir={tmp_path / 'train'}", f"paths.teacher_cache_dir={tmp_path / 'teachers'}",
        "model=student", "distill=logits", *common, *TINY_TRAINING]))
    on_disk = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert on_disk["test/acc"] == pytest.approx(trained["test/acc"])
    # the teacher was trained on the same splits and scored beside the student
    assert "teacher/test/f1" in trained and trained["model/params"] < trained["teacher/model/params"]
    # honest protocol, checked on every run: encoders fit on the training rows alone (validation and
    # test rows come out of the same slice)
    assert 0 < trained["audit/preprocessing_fit_rows"] < TRAIN_SOURCE_ROWS[data[0]]
    if name.startswith("cic_ids2017"):  # validation cut per class by time, like the test split
        assert trained["audit/val_selection"] == "per_class_time"
    if trained["data/window"] > 1:  # accuracy apart where a window's earlier flows hold another class
        if name == "cic_ids2017_multiclass":  # the slice's attack kinds share hosts
            assert trained["test/mixed_context_rows"] > 0
        if trained["test/mixed_context_rows"]:
            parts = (trained["test/mixed_context_acc"], trained["test/same_context_acc"])
            assert min(parts) - 1e-9 <= trained["test/acc"] <= max(parts) + 1e-9
    else:
        assert "test/mixed_context_rows" not in trained  # one-flow windows have no context
    if name == "cic_ids2017_multiclass":  # every class, DDoS included, was learnt
        expected = ["BENIGN", "DDoS", "Portscan", "SSH-Patator"]
        assert load_classifier(trained["best_checkpoint"]).hparams.class_names == expected
    # a few batches already learn something real
    assert trained["test/auroc"] > 0.8, trained["test/auroc"]

    evaluated = run_evaluate(compose_config("evaluate", [
        f"paths.output_dir={tmp_path / 'eval'}", f"ckpt_path={trained['best_checkpoint']}", *common]))
    for key in ("test/acc", "test/f1", "test/specificity", "test/auroc"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key
    assert evaluated["audit/checkpoint_dev_rows_match"] is True
    assert evaluated["audit/dev_rows_fingerprint"] == trained["audit/dev_rows_fingerprint"]
    assert {"confusion_matrix.png", "roc.png", "pr.png"} <= {p.name for p in (tmp_path / "eval").glob("*.png")}

    # the peers on the run's own data config (run=): no data settings to repeat
    peers = run_baselines(compose_config("baselines", [
        f"paths.output_dir={tmp_path / 'peers'}", f"run={tmp_path / 'train'}", "baselines.n_jobs=1",
        "baselines.models=[majority,logreg]"]))
    assert peers["majority/test/auroc"] == pytest.approx(0.5)
    assert peers["logreg/test/auroc"] > 0.8 and peers["logreg/test/acc"] > peers["majority/test/acc"]
    # peers and the network were scored on the same splits: the same leakage audit
    assert {k: v for k, v in peers.items() if k.startswith("audit/")} == \
        {k: v for k, v in trained.items() if k.startswith("audit/")}


def test_evaluate_tunes_on_the_training_runs_own_validation_rows(sliced_root, tmp_path):
    """NSL-KDD has no time order, so validation is a seeded carve: evaluate must carve it as training did."""
    from mstr.errors import ConfigError
    from mstr.evaluate import run as run_evaluate
    from mstr.train import run as run_train

    common = [f"paths.data_dir={sliced_root}", "data=nsl_kdd", "data.variant=20percent"]
    trained = run_train(compose_config("train", [f"paths.output_dir={tmp_path / 'train'}", "model=student",
                                                 "distill=none", "seed=1", *common, *TINY_TRAINING]))

    def evaluate(name: str, *extra: str) -> dict:
        return run_evaluate(compose_config("evaluate", [
            f"paths.output_dir={tmp_path / name}", "threshold=tune", f"ckpt_path={trained['best_checkpoint']}",
            *common, *extra]))

    tuned = evaluate("own_seed")  # the seed comes from the checkpoint
    assert tuned["audit/checkpoint_dev_rows_match"] is True
    assert tuned["val/auroc"] == pytest.approx(trained["val/auroc_best"], abs=1e-6)
    with pytest.raises(ConfigError, match="another validation split than the training run's"):
        evaluate("other_seed", "seed=0")


def test_a_validation_of_unseen_attack_types_scores_them_apart(sliced_root, tmp_path):
    """`data.val_unseen_types`: the run trains without the held types, selects on a validation that holds
    them, and says which types they were and how many of their rows the kept model flags."""
    from hydra.utils import instantiate

    from mstr.data.preprocessing import FlowPreprocessor
    from mstr.train import run as run_train
    from mstr.training.checkpoint import load_classifier
    from mstr.training.evaluation import predict

    data = [f"paths.data_dir={sliced_root}", "data=nsl_kdd", "data.variant=20percent", "data.val_unseen_types=0.2"]
    trained = run_train(compose_config("train", [
        f"paths.output_dir={tmp_path / 'train'}", *data, "model=student", "distill=none", *TINY_TRAINING]))
    types = trained["data/val_unseen_types"].split(",")
    assert types and trained["val/unseen_type_rows"] == trained["data/val_unseen_type_rows"] > 0
    assert trained["audit/val_selection"] == "stratified+unseen_types"
    # the recall is the kept model's, on exactly the held rows: score validation again and count
    model = load_classifier(trained["best_checkpoint"])
    cfg = compose_config("train", data)
    dm = instantiate(cfg.data, _partial_=True)(preprocessor=FlowPreprocessor.from_dict(model.hparams["preprocessor"]))
    dm.setup()
    val = dm.tables["val"].frame
    held = val["attack_type"].isin(types).to_numpy()
    assert (held == dm.val_unseen).all() and not dm.tables["train"].frame["attack_type"].isin(types).any()
    probs, _ = predict(model, dm.val_dataloader())
    assert trained["val/unseen_type_recall"] == pytest.approx((probs.argmax(-1).numpy()[held] != 0).mean())


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_tree_teacher_distils_into_the_student_and_is_cached(kind, sliced_root, tmp_path):
    """distill.teacher=xgboost|lightgbm: the booster is fit on the training rows, the student learns
    from its probabilities (here also on swapped-column windows), and a second run reuses the booster."""
    from mstr.train import run as run_train

    common = [f"paths.data_dir={sliced_root}", "data=nsl_kdd", "data.variant=20percent", "model=student",
              "distill=logits", f"distill.teacher={kind}", "distill.augment=swap", *TINY_TRAINING,
              f"paths.teacher_cache_dir={tmp_path / 'teachers'}"]
    first = run_train(compose_config("train", [f"paths.output_dir={tmp_path / 'a'}", *common]))
    assert first["teacher/model/trees"] > 0 and first["teacher/model/nodes"] > first["teacher/model/trees"]
    assert first["teacher/test/acc"] > 0.6  # a real booster on real rows, not a constant
    assert first["compression/teacher_trees"] == first["teacher/model/trees"]
    assert "compression/params_ratio" not in first  # trees have no weights to compare
    cached = Path(first["teacher/source"])
    assert cached.is_file() and cached.parent.parent == tmp_path / "teachers"
    second = run_train(compose_config("train", [f"paths.output_dir={tmp_path / 'b'}", *common]))
    assert second["teacher/source"] == first["teacher/source"]
    assert second["teacher/test/acc"] == first["teacher/test/acc"]
    assert second["test/acc"] == first["test/acc"]  # same booster, same seed: the same student
