# Run by tests/distributed/ddp_error_check.sh under torchrun (2 ranks): an R callback fails on rank 1
# only, in epoch 2, while rank 0 trains on. Every rank must end (no rank left waiting in a
# collective) and the R error must reach the launcher's output.
library(pyluz)
rank <- Sys.getenv("RANK")
set.seed(1)
x <- matrix(rnorm(400), 100, 4)
y <- matrix(x[, 1] * 2 + x[, 2], 100, 1)
net <- nn_module("net", initialize = function() self$l <- nn_linear(4, 1), forward = function(x) self$l(x))
boom <- luz_callback(
  "boom",
  on_epoch_begin = function() if (rank == "1" && ctx$epoch == 2) stop("rank 1 broke in epoch 2")
)
torch_manual_seed(3)
fitted <- net %>%
  setup(loss = nn_mse_loss(), optimizer = optim_sgd) %>%
  set_opt_hparams(lr = 0.05) %>%
  fit(list(x, y), epochs = 4, verbose = FALSE, callbacks = list(boom()))
cat("rank", rank, "finished training, which it should not have\n")
