# Instructions per read of `ctx$<field>` from an R callback, the first read after the engine
# replaced the field (`loss`, `pred`, `target`: every batch) or an unchanged one (`opt`, `iter`,
# `epoch`, `records`). Run by bench/ctx_read_instructions.py under callgrind: per field, K rounds of
# "replace the field, read it" and K rounds of "replace it" alone, each counted (one dump each);
# the difference over K is one read. The replacing is what the loop does every batch (a clone of
# the tensor, a new loss dict), done here from Python without a training step in between.
suppressPackageStartupMessages(library(pyluz))
invisible(pyluz_engine())
K <- as.integer(Sys.getenv("K", "1000"))
fields <- strsplit(Sys.getenv("FIELDS", "loss,pred,target,opt,iter,epoch,records"), ",")[[1]]
py <- reticulate::py_run_string("
import ctypes, os
_lib = ctypes.CDLL(os.environ['PYLUZ_BENCH_INSTR_LIB'])
def start(): _lib.bench_instr_start()
def stop(): _lib.bench_instr_stop()
def replace(ctx, name):
    if name not in ('loss', 'pred', 'target'):
        return
    v = getattr(ctx, name)
    v = {k: t.clone() for k, t in v.items()} if isinstance(v, dict) else v.clone()
    setattr(ctx, name, v)
", local = FALSE, convert = FALSE)
replace <- function(ctx, f) reticulate::py_call(py$replace, ctx, f)
read <- function(ctx, f) {
  switch(f, iter = ctx$iter, epoch = ctx$epoch, loss = ctx$loss, pred = ctx$pred, target = ctx$target,
         opt = ctx$opt, records = ctx$records)
}
no_read <- function(ctx, f) switch(f, iter = 1, 2)
counter <- luz_callback(
  "ctx_read_instructions",
  on_train_batch_end = function() {
    if (ctx$iter != 3 || ctx$epoch != 1) return()
    for (f in fields) {
      for (g in list(read, no_read)) {
        v <- read(ctx, f)
        for (i in 1:20) {
          replace(ctx, f)
          v <- g(ctx, f)
        }
        gc()
        reticulate::py_call(py$start)
        for (i in seq_len(K)) {
          replace(ctx, f)
          v <- g(ctx, f)
        }
        reticulate::py_call(py$stop)
      }
    }
  }
)
set.seed(1)
x <- matrix(rnorm(256 * 8), 256, 8)
y <- sample(1:3, 256, replace = TRUE)
torch_manual_seed(1)
fitted <- nn_linear %>%
  setup(loss = nn_cross_entropy_loss(), optimizer = optim_sgd) %>%
  set_hparams(in_features = 8, out_features = 3) %>%
  set_opt_hparams(lr = 0.01) %>%
  fit(list(x, y), epochs = 1, callbacks = list(counter()), verbose = FALSE,
      dataloader_options = list(batch_size = 16))
