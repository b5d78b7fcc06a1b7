"""`KeepExampleInput`: keeps a few rows of what the model was fed, for exporting it later.

A model defined in R is saved with a program of its forward pass (see `pyluz.export`), which
needs an example input. The R front end adds this callback to its fits; a Python fit does not
pay for it unless asked.
"""

from ..export import EXAMPLE_ROWS, example_rows
from .base import Callback


class KeepExampleInput(Callback):
    """At the end of the fit, `self.example` is a CPU copy of the first `rows` rows of the last model input.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> keep = pyluz.callbacks.KeepExampleInput()
    >>> fitted = model.fit((x, y), epochs=1, verbose=False, callbacks=[keep])
    >>> fitted.example_input = keep.example     # what `fitted.save()` exports an R-defined model with
    >>> keep.example.shape
    torch.Size([2, 4])
    """

    def __init__(self, rows=EXAMPLE_ROWS):
        self.rows = rows
        self.example = None

    def on_fit_end(self):
        self.example = example_rows(self.ctx.input, self.rows)
