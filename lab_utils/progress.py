"""What a run prints while it trains: progress within an epoch and how long the run will take.

Plain text only, so that it reads the same in JupyterLab, Colab, papermill's output and a
terminal: a progress line is rewritten in place with a carriage return (`\\r`), and the
epoch's own line (`lab_utils.train.epoch_line`) replaces it when the epoch ends, so one
line per epoch stays the record. `lab_utils.publish` keeps only what a carriage return left
visible, so committed notebooks hold no progress lines. Nothing here touches the device:
each batch costs one clock reading, and a line is printed at most every few seconds.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator

# Seconds between two progress lines, and how many batches are timed for the first estimate.
EVERY_S = 3.0
WARMUP_BATCHES, TIMED_BATCHES = 2, 8


def duration(seconds: float) -> str:
    """`seconds` as a reader plans with it: 4.5 s, 45 s, 3.2 min, 1.5 h."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def status(text: str) -> None:
    """Show `text` on the current line, replacing what a previous call showed there."""
    sys.stdout.write("\r" + text)
    sys.stdout.flush()


class EpochProgress:
    """The training batches of one epoch, counted as the loop takes them.

    Every `EVERY_S` seconds it shows batches done, images per second and the epoch's time
    left. In the run's first epoch, once `TIMED_BATCHES` batches after `WARMUP_BATCHES` are
    timed, it prints the estimate of the whole run (`RunEstimate.announce`). `batches` and
    `images` say what the loop took, so that `fit` can tell a loop that trained on nothing.
    """

    def __init__(self, loader: Iterable, epoch: int, epochs: int, show: bool,
                 estimate: "RunEstimate | None" = None):
        self.loader, self.epoch, self.epochs, self.show = loader, epoch, epochs, show
        self.estimate = estimate
        self.batches = self.images = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        total = len(self.loader)
        start = last = time.perf_counter()
        timed_from = None
        for batch in self.loader:
            yield batch
            self.batches += 1
            self.images += len(batch[1])
            now = time.perf_counter()
            if self.batches == WARMUP_BATCHES:
                timed_from = (now, self.images)
            if (self.estimate is not None and timed_from is not None
                    and self.batches == WARMUP_BATCHES + TIMED_BATCHES):
                t0, n0 = timed_from
                self.estimate.announce(self.images - n0, now - t0, (total - self.batches)
                                       * (now - t0) / TIMED_BATCHES + (now - start))
                self.estimate = None
            if self.show and now - last >= EVERY_S and self.batches < total:
                rate = self.images / (now - start)
                left = (total - self.batches) * (now - start) / self.batches
                status(f"epoch {self.epoch}/{self.epochs}: batch {self.batches}/{total}, "
                       f"{rate:,.0f} images/s, {duration(left)} left in this epoch  ")
                last = now


class RunEstimate:
    """How long a run will take: first from timed batches, then from finished epochs.

    `announce` prints, early in the first epoch, the time of the whole run from the training
    images per second and the time of the measuring passes (timed once before training);
    `left` gives the time still to go after each finished epoch, from the epochs so far.
    """

    def __init__(self, epochs: int, first_epoch: int, measure_s: float, show: bool):
        self.epochs, self.first, self.measure_s, self.show = epochs, first_epoch, measure_s, show
        self.announced: float | None = None  # the estimate printed, for the record

    def announce(self, images: int, seconds: float, epoch_s: float) -> None:
        epochs_left = self.epochs - self.first + 1
        per_epoch = epoch_s + self.measure_s
        self.announced = epochs_left * per_epoch
        if self.show:
            status("")
            print(f"\rEstimated time: about {duration(self.announced)} for "
                  f"{epochs_left} epoch(s) on this machine ({images / seconds:,.0f} training "
                  f"images/s: {duration(epoch_s)} of training and {duration(self.measure_s)} "
                  "of test and other measurements per epoch). It is updated after every "
                  "epoch.", flush=True)

    def left(self, epoch_times: list[float], epoch: int) -> float:
        """Seconds still to go after `epoch`, from the mean of this run's epochs so far."""
        return (self.epochs - epoch) * sum(epoch_times) / max(len(epoch_times), 1)
