"""Exceptions that steer the loop (luz's R conditions, as Python exceptions) and error wrappers."""


class ControlFlow(Exception):
    """Base of the exceptions that change the loop's flow; callbacks raise them on purpose."""


class StopTraining(ControlFlow):
    """Stop after the current breakpoint: `on_early_stopping`, then `on_fit_end`, then a normal return.

    Example:

    >>> class StopAtLoss(pyluz.Callback):
    ...     def on_epoch_end(self):
    ...         if self.ctx.get_metric("loss", "train") < 10:
    ...             raise pyluz.StopTraining()
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> len(model.fit((x, y), epochs=5, verbose=False, callbacks=[StopAtLoss()]).records["metrics"]["train"])
    1
    """


class SkipEpoch(ControlFlow):
    """Skip the rest of the current epoch and go on with the next one (used by AutoResume)."""


class CallbackError(RuntimeError):
    """An error raised inside a callback or a metric, re-raised with where it happened.

    The original exception is chained as ``__cause__`` and its message is kept at the end of ours,
    so tags that front ends put in messages survive.
    """

    def __init__(self, kind, name, where, epoch, iteration, original, training=None):
        self.kind, self.name, self.where = kind, name, where
        self.epoch, self.iter = epoch, iteration
        self.training = training  # the loop's mode when it happened (None: not known)
        self.original = original
        super().__init__(
            f"Error in {kind} {name} at {where} (epoch {epoch}, iter {iteration}): "
            f"{type(original).__name__}: {original}"
        )


class InputMismatchError(ValueError, RuntimeError):
    """The first batch of a phase failed in the model or the loss: says which argument and what the model expects.

    A ValueError (bad input) that is also a RuntimeError, so code that caught torch's own
    "mat1 and mat2 shapes cannot be multiplied" RuntimeError still catches it; the torch error is
    chained as ``__cause__`` and its message is kept at the end.
    """


class PeerFailure(RuntimeError):
    """Another rank of a data-parallel fit failed, so this one stopped too; the message is that rank's error.

    Raised on the ranks whose collective broke because a peer ended, chained to the broken
    collective's own error (``__cause__``); ``rank`` is the rank that failed first.
    """

    def __init__(self, rank, message):
        self.rank = rank
        super().__init__(f"Rank {rank} of the data-parallel fit failed, so this rank stopped too: {message}")
