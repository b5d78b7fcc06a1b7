"""Matplotlib plots: the metrics of a fit (`Fitted.plot()`) and the learning-rate finder curve."""


def _pyplot():
    # Without a display, matplotlib picks the Agg backend by itself (figures can still be saved).
    import matplotlib.pyplot as plt

    return plt


def _inline_backend():
    import matplotlib

    return "inline" in matplotlib.get_backend()


def _returned(fig):
    """`fig`, released from pyplot under a notebook's inline backend: the notebook then shows it once,
    as the cell's value, instead of once more when the cell ends (figures pyplot still holds)."""
    if _inline_backend():
        _pyplot().close(fig)
    return fig


SET_STYLES = {"train": {"color": "tab:blue", "linestyle": "-"}, "valid": {"color": "tab:orange", "linestyle": "--"}}


def plot_metrics(df):
    """Figure of a metrics frame `DataFrame[set, metric, epoch, value]` (what `Fitted.get_metrics()` gives).

    One panel per metric, stacked, sharing the epoch axis; in each, one line per set (train solid,
    valid dashed, points marked) and a legend, as Keras users plot a History. Returns the
    `matplotlib.figure.Figure` (in a notebook it shows once, as the cell's value).

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> fitted = pyluz.setup(nn.Linear(4, 2), loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).fit(
    ...     (x, y), epochs=2, valid_data=0.2, verbose=False)
    >>> fig = fitted.plot()
    >>> [ax.get_title() for ax in fig.axes], [line.get_label() for line in fig.axes[0].get_lines()]
    (['loss'], ['train', 'valid'])
    >>> fig.savefig("metrics.png")
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame) or not {"set", "metric", "epoch", "value"} <= set(df.columns):
        raise TypeError(
            "plot_metrics: `df` must be a DataFrame with columns set, metric, epoch, value "
            f"(Fitted.get_metrics()), got {type(df).__name__}."
        )
    if df.empty:
        raise ValueError("plot_metrics: there are no recorded metrics to plot.")
    metrics = list(dict.fromkeys(df["metric"]))
    sets = [s for s in ("train", "valid") if s in set(df["set"])]
    sets += [s for s in dict.fromkeys(df["set"]) if s not in sets]
    plt = _pyplot()
    fig, axes = plt.subplots(len(metrics), 1, sharex=True, squeeze=False, figsize=(6, 2.4 * len(metrics) + 0.6))
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        for set_name in sets:
            part = df[(df["metric"] == metric) & (df["set"] == set_name)].sort_values("epoch")
            if not part.empty:
                ax.plot(
                    part["epoch"].to_numpy(),
                    part["value"].to_numpy(dtype=float),
                    marker="o",
                    markersize=3,
                    linewidth=1.2,
                    label=set_name,
                    **SET_STYLES.get(set_name, {}),
                )
        ax.set_title(metric)
        ax.grid(True, alpha=0.3)
        ax.legend()
    axes[-1, 0].set_xlabel("epoch")
    fig.tight_layout()
    return _returned(fig)


def plot_lr_finder(lr, loss, smoothed, suggestion=None):
    """Figure of an lr_finder run: raw loss dotted, smoothed loss as a line, log-scaled learning rate
    (in a notebook it shows once, as the cell's value)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lr, loss, linestyle=":", color="grey", label="loss")
    ax.plot(lr, smoothed, color="c", linewidth=2, label="smoothed loss")
    if suggestion is not None:
        ax.axvline(suggestion, color="red", linestyle="--", linewidth=1, label=f"suggested lr {suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("Learning Rate")
    ax.set_ylabel("Loss")
    ax.legend()
    fig.tight_layout()
    return _returned(fig)
