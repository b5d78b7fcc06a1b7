"""Run by tests/distributed/ddp_error_check.sh under torchrun (2 ranks): a callback fails on rank 1
only, in epoch 2, while rank 0 trains on. Both ranks must end, rank 0 with rank 1's error."""

import os

import torch
from torch import nn

import pyluz


class Boom(pyluz.Callback):
    def on_epoch_begin(self):
        if os.environ["RANK"] == "1" and self.ctx.epoch == 2:
            raise ValueError("rank 1 broke in epoch 2")


torch.manual_seed(1)
x = torch.randn(100, 4)
y = x[:, :1] * 2 + x[:, 1:2]
model = pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
model = model.set_hparams(in_features=4, out_features=1).set_opt_hparams(lr=0.05)
model.fit((x, y), epochs=4, verbose=False, callbacks=[Boom()])
print("rank", os.environ["RANK"], "finished training, which it should not have")
