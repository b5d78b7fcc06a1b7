# µs per read of `ctx$<field>` from an R callback, at epoch 1 and at the last epoch.
#
#   R_LIBS=.rlib RETICULATE_PYTHON=.venv/bin/python Rscript bench/r/ctx_read_cost.R [epochs]
#
# A luz_callback reads each field at `on_train_batch_end` of every batch of the first and the
# last epoch: once right after the loop changed it ("new": `loss`, `pred`, `target` change every
# batch, `iter` too) and then REPS more times ("again": the same value, as a callback that reads
# a field twice does). Times are wall-clock µs (`Sys.time()`), medians over the batches; the
# machine's load moves them, so compare rows of one run. `records` grows by one entry per epoch
# and set: the last-epoch column shows whether reading it grows with the number of epochs.
suppressPackageStartupMessages(library(pyluz))
invisible(pyluz_engine())
args <- commandArgs(trailingOnly = TRUE)
epochs <- if (length(args)) as.integer(args[[1]]) else 200L
REPS <- 20L
fields <- c("iter", "epoch", "loss", "pred", "target", "opt", "records")

now <- function() as.numeric(Sys.time())
read <- function(ctx, f) {
  switch(f, iter = ctx$iter, epoch = ctx$epoch, loss = ctx$loss, pred = ctx$pred,
         target = ctx$target, opt = ctx$opt, records = ctx$records)
}
probe <- luz_callback(
  "read_cost",
  initialize = function() {
    self$new <- list()
    self$again <- list()
  },
  on_train_batch_end = function() {
    at <- ctx$epoch
    if (at != 1 && at != epochs) return()
    key <- paste0("epoch ", at)
    for (f in fields) {
      t0 <- now()
      v <- read(ctx, f)
      t1 <- now()
      for (i in seq_len(REPS)) v <- read(ctx, f)
      t2 <- now()
      self$new[[key]][[f]] <- c(self$new[[key]][[f]], (t1 - t0) * 1e6)
      self$again[[key]][[f]] <- c(self$again[[key]][[f]], (t2 - t1) * 1e6 / REPS)
    }
  }
)

set.seed(1)
x <- matrix(rnorm(256 * 8), 256, 8)
y <- sample(1:3, 256, replace = TRUE)
cb <- probe()
torch_manual_seed(1)
fitted <- nn_linear %>%
  setup(loss = nn_cross_entropy_loss(), optimizer = optim_sgd, metrics = list(luz_metric_accuracy())) %>%
  set_hparams(in_features = 8, out_features = 3) %>%
  set_opt_hparams(lr = 0.01) %>%
  fit(list(x, y), epochs = epochs, valid_data = 0.25, callbacks = list(cb), verbose = FALSE,
      dataloader_options = list(batch_size = 16))

cat(sprintf("µs per ctx$<field> read from an R callback (median over %d batches; %d epochs)\n",
            length(cb$new[[1]][[1]]), epochs))
cat(sprintf("%-8s %14s %14s %14s %14s\n", "field", "epoch 1 new", "epoch 1 again",
            paste("epoch", epochs, "new"), paste("epoch", epochs, "again")))
last <- paste0("epoch ", epochs)
for (f in fields) {
  cat(sprintf("%-8s %14.1f %14.1f %14.1f %14.1f\n", f,
              median(cb$new[["epoch 1"]][[f]]), median(cb$again[["epoch 1"]][[f]]),
              median(cb$new[[last]][[f]]), median(cb$again[[last]][[f]])))
}
