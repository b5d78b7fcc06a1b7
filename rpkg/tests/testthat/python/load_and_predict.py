"""Run in a separate Python process by the mixed-language test: load a model saved from R with
pyluz.load, predict on the given inputs and write the predictions next to them."""

import sys

import numpy as np
import torch

import luz_fixtures  # noqa: F401  -- pyluz.load finds classes only in modules already imported
import pyluz

model_path, x_path, out_path = sys.argv[1:4]
fitted = pyluz.load(model_path)
x = torch.tensor(np.loadtxt(x_path, delimiter=",", ndmin=2), dtype=torch.float32)
preds = fitted.predict(x, verbose=False)
np.savetxt(out_path, preds.numpy().astype("float64"), delimiter=",", fmt="%.10g")
print(type(fitted.model).__module__ + "." + type(fitted.model).__name__)
