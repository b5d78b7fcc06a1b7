"""Metrics for pyluz (luz's ``luz_metric_*``)."""

from .adapters import FunctionMetric, TorchMetric, as_metric
from .auroc import BinaryAUROC, MulticlassAUROC
from .base import LossAverage, Metric, format_metric_value, metric_keys
from .classification import Accuracy, BinaryAccuracy, BinaryAccuracyWithLogits
from .regression import MAE, MSE, RMSE
from .sets import MetricSet, as_metric_set

__all__ = [
    "Metric",
    "MetricSet",
    "LossAverage",
    "Accuracy",
    "BinaryAccuracy",
    "BinaryAccuracyWithLogits",
    "MAE",
    "MSE",
    "RMSE",
    "BinaryAUROC",
    "MulticlassAUROC",
    "TorchMetric",
    "FunctionMetric",
    "as_metric",
    "as_metric_set",
    "metric_keys",
    "format_metric_value",
]
