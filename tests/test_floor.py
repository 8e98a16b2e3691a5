"""A cheap real-data floor: the default student, trained briefly through `mstr.train` on a slice of the
shared CIC-IDS2017 files (multi-class), must beat the majority class and the best single-feature stump,
scored by `mstr.baselines` on the same splits, by a wide margin. A broken model, loss, sampler or data
path lands near those floors (macro F1 about 0.18 and 0.44 here; the student reaches well above 0.9)."""

from __future__ import annotations

import pytest

from conftest import write_cic_slice

DATA = ["data=cic_ids2017", "data.task=multiclass"]


@pytest.fixture(scope="module")
def cic_root(tmp_path_factory, data_dir):
    return write_cic_slice(data_dir, tmp_path_factory.mktemp("cic_slice"))


def test_a_small_student_beats_the_majority_class_and_the_stump_by_a_margin(cic_root, compose_cfg, tmp_path):
    from mstr.baselines import run as run_baselines
    from mstr.train import run as run_train

    data = [f"paths.data_dir={cic_root}", *DATA]
    student = run_train(compose_cfg([*data, "model=student", "distill=none", "trainer.max_epochs=4",
                                     "data.batch_size=64", "logger=none", "trainer.enable_progress_bar=false"],
                                    out=tmp_path / "student"))
    peers = run_baselines(compose_cfg([*data, "baselines.models=[majority,stump]", "baselines.n_jobs=1"],
                                      "baselines", out=tmp_path / "peers"))
    assert student["audit/dev_rows_fingerprint"] == peers["audit/dev_rows_fingerprint"]  # the same splits
    f1, acc = student["test/f1"], student["test/acc"]  # macro F1 over the 4 classes; accuracy
    assert f1 > peers["stump/test/f1"] + 0.3 and f1 > peers["majority/test/f1"] + 0.5, (f1, peers)
    assert acc > peers["stump/test/acc"] + 0.15 and acc > peers["majority/test/acc"] + 0.3, (acc, peers)
