#!/usr/bin/env python
"""pyluz demo: train a small MLP on scikit-learn's bundled digits (8x8 images, 10 classes).

    .venv/bin/python examples/demo.py        # `make demo` runs this

Shows the luz workflow in Python: setup() -> set_hparams() -> set_opt_hparams() -> fit() with a
held-out validation fraction and a progress display, the luz-style summary of the fitted model,
evaluate() on a test split nobody trained or validated on, and predict(). Seeded; runs in a few
seconds on 2 CPU cores. Exits non-zero if the validation accuracy is below 0.95.
"""

import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import pyluz

MIN_VALID_ACC = 0.95


class DigitsNet(nn.Module):
    """64 pixels -> hidden -> hidden -> 10 logits."""

    def __init__(self, n_features=64, hidden=128, n_classes=10, dropout=0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x):
        return self.net(x)


def load_data(seed):
    digits = load_digits()  # bundled with scikit-learn: no download
    x = (digits.data / 16.0).astype(np.float32)  # pixel values are 0..16
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


def main():
    seed = 0
    # A model this small runs fastest on one thread; more threads only add synchronisation, and on
    # a busy machine OpenMP threads fighting for cores can make each step 10-50x slower.
    torch.set_num_threads(1)
    torch.manual_seed(seed)  # model init, the validation split and the shuffling
    x_train, x_test, y_train, y_test = load_data(seed)
    print(f"digits: {len(x_train)} training rows (20% of them held out for validation), {len(x_test)} test rows")

    model = (
        pyluz.setup(
            DigitsNet, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[pyluz.metrics.Accuracy()]
        )
        .set_hparams(hidden=128, dropout=0.1)
        .set_opt_hparams(lr=3e-3)
    )
    start = time.perf_counter()
    # numpy arrays take the in-memory fast path; valid_data=0.2 holds out a random 20% of them
    fitted = model.fit(
        (x_train, y_train), epochs=25, valid_data=0.2, verbose=True, dataloader_options={"batch_size": 32}
    )
    seconds = time.perf_counter() - start

    print()
    print(fitted)  # luz-style summary: time, last epoch's train and valid metrics, the model

    metrics = fitted.get_metrics()
    valid_acc = metrics.query("set == 'valid' and metric == 'acc'")["value"].iloc[-1]

    print("\nTest set (never seen in training or validation):")
    evaluation = fitted.evaluate((x_test, y_test), verbose=False)
    print(evaluation)

    preds = fitted.predict(x_test[:10]).argmax(dim=1)
    print(f"\nfirst 10 test digits: {y_test[:10].tolist()}")
    print(f"predicted:            {preds.tolist()}")
    print(f"\ntrained in {seconds:.1f}s; final validation accuracy {valid_acc:.4f}")

    if not valid_acc >= MIN_VALID_ACC:
        print(f"FAILED: validation accuracy {valid_acc:.4f} < {MIN_VALID_ACC}", file=sys.stderr)
        return 1
    print(f"OK: validation accuracy >= {MIN_VALID_ACC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
