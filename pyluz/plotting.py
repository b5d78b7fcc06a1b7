"""Matplotlib plots: the metrics of a fit (`Fitted.plot()`) and the learning-rate finder curve."""


def _pyplot():
    # Without a display, matplotlib picks the Agg backend by itself (figures can still be saved).
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(df):
    """Figure of a metrics frame `DataFrame[set, metric, epoch, value]` (what `Fitted.get_metrics()` gives).

    Like luz's `facet_grid(metric ~ set, scales = "free_y")`: one row of panels per metric, one
    column per set (train, valid), points joined by lines over epochs; panels of a row share the
    y axis. Returns the `matplotlib.figure.Figure`.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> fitted = pyluz.setup(nn.Linear(4, 2), loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).fit(
    ...     (x, y), epochs=2, valid_data=0.2, verbose=False)
    >>> fig = fitted.plot()
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
    fig, axes = plt.subplots(
        len(metrics),
        len(sets),
        sharex=True,
        sharey="row",
        squeeze=False,
        figsize=(3.2 * len(sets) + 0.8, 2.2 * len(metrics) + 0.6),
    )
    for i, metric in enumerate(metrics):
        for j, set_name in enumerate(sets):
            ax = axes[i][j]
            part = df[(df["metric"] == metric) & (df["set"] == set_name)].sort_values("epoch")
            if not part.empty:
                ax.plot(
                    part["epoch"].to_numpy(),
                    part["value"].to_numpy(dtype=float),
                    marker="o",
                    markersize=3,
                    color="black",
                    linewidth=1,
                )
            ax.grid(True, alpha=0.3)
            if i == 0:
                ax.set_title(set_name)
            if j == 0:
                ax.set_ylabel("value")
            if j == len(sets) - 1:
                ax.annotate(metric, xy=(1.02, 0.5), xycoords="axes fraction", rotation=-90, va="center", ha="left")
            if i == len(metrics) - 1:
                ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def plot_lr_finder(lr, loss, smoothed, suggestion=None):
    """Figure of an lr_finder run: raw loss dotted, smoothed loss as a line, log-scaled learning rate."""
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
    return fig
