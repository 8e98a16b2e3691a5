"""The training progress bar: Lightning's TQDM bar, safe under DDP, and closed when a fit fails.

At each training epoch's end Lightning's bar reads the epoch's metrics on rank zero alone (the other
ranks' bars are off). Reading them reduces every value logged with `sync_dist=True` across the ranks,
a collective that rank zero then runs by itself: it waits on the others, which have moved on to the
next collective, and every rank hangs (Lightning issue #21264; here `python -m mstr.train
trainer=ddp_cpu` stopped for good at the end of its first epoch).
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar


class SyncedProgressBar(TQDMProgressBar):
    """`TQDMProgressBar` whose epoch-end metrics are read on every rank, so that their reduction is one
    collective that all ranks join; only rank zero's bar shows them. A fit stopped by an exception (a
    pruned sweep trial, bad data mid-epoch) never reaches on_train_end, which closes the bars: their
    line was left open, and whatever came next (the error, the sweep's summary) was printed on its end."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = self.get_metrics(trainer, pl_module)
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(metrics)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        for bar in (self._val_progress_bar, self._train_progress_bar):  # the inner bar first; None: never opened
            if bar is not None:
                bar.close()
