"""The single list of breakpoints, in the order the loop reaches them (SPEC §3.3)."""

FIT_EVENTS = (
    "on_fit_begin",
    "on_epoch_begin",
    "on_train_begin",
    "on_train_batch_begin",
    "on_train_batch_after_pred",
    "on_train_batch_after_loss",
    "on_train_batch_before_backward",
    "on_train_batch_before_step",
    "on_train_batch_after_step",
    "on_train_batch_end",
    "on_train_end",
    "on_valid_begin",
    "on_valid_batch_begin",
    "on_valid_batch_after_pred",
    "on_valid_batch_after_loss",
    "on_valid_batch_end",
    "on_valid_end",
    "on_epoch_end",
    "on_fit_end",
)
EXTRA_EVENTS = (
    "on_interrupt",
    "on_early_stopping",
    "on_predict_begin",
    "on_predict_batch_begin",
    "on_predict_batch_end",
    "on_predict_end",
)
EVENTS = FIT_EVENTS + EXTRA_EVENTS


def check_event(name, argument="call_on"):
    """Raise a helpful error when `name` is not a breakpoint."""
    if name not in EVENTS:
        import difflib

        # `on_batch_*` (older luz code, luz's gallery) means the training breakpoints
        guess = "on_train_" + str(name)[3:] if str(name).startswith("on_batch_") else None
        close = [guess] if guess in EVENTS else difflib.get_close_matches(str(name), EVENTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"`{argument}` must be a breakpoint name such as 'on_epoch_end', got {name!r}.{hint}")
    return name
