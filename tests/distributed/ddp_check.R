# DDP from R: 2 gloo ranks, each an R process embedding the engine, train like one process with the
# global batch. Run by `make test-ddp`:
#
#   .venv/bin/torchrun --standalone --nproc_per_node=2 --no-python Rscript tests/distributed/ddp_check.R
#
# Every rank fits an R nn_module with an R callback and R metrics (written as luz's docs write
# them) on in-memory R data with per-rank batch B (then an R dataset() + dataloader(), plain and
# shuffled, then an R custom step()), then fits the one-process reference itself (batch
# 2B, the launcher's WORLD_SIZE hidden from the engine) and compares records, the callback's state
# and final weights within TOL. Rank 0 prints one line per check and `ddp (R): P passed, F failed`;
# a rank with a failed check exits 1 (torchrun then fails). An R error ends the process at once
# (Rscript's default), so torchrun stops the other rank instead of leaving it in a collective.

Sys.setenv(PYLUZ_DDP_TIMEOUT = "120")  # read by the engine when it joins the group
library(pyluz)

TOL <- 1e-5
B <- 8L
SEED <- 2024
rank <- as.integer(Sys.getenv("RANK", "0"))
world <- as.integer(Sys.getenv("WORLD_SIZE", "1"))
if (world < 2) stop("Run with torchrun and 2 processes: torchrun --standalone --nproc_per_node=2 ",
                    "--no-python Rscript tests/distributed/ddp_check.R")
py_env <- reticulate::import("os")$environ

make_data <- function(n, seed) {
  set.seed(seed)
  x <- matrix(rnorm(n * 4), n, 4)
  y <- as.integer(x[, 1] - x[, 2] > 0) + as.integer(x[, 3] > 0.5) + 1L  # classes 1..3
  list(x = x, y = y)
}
train <- make_data(100, 1)  # batch 16 drops 4 rows, as 2 x 50 rows with batch 8 do
valid <- make_data(40, 2)

net <- nn_module(
  "net",
  initialize = function(hidden = 16) {
    self$body <- nn_linear(4, hidden)
    self$head <- nn_linear(hidden, 3)
  },
  forward = function(x) self$head(nnf_relu(self$body(x)))
)

# R metrics, written as in luz's documentation (nothing DDP-specific)
hits <- luz_metric(
  abbrev = "Hits",
  initialize = function() {
    self$right <- 0
    self$seen <- 0
  },
  update = function(preds, target) {
    guess <- torch_argmax(preds, dim = 2)
    self$right <- self$right + (guess == target)$sum()$item()
    self$seen <- self$seen + target$numel()
  },
  compute = function() self$right / self$seen
)
prob_err <- luz_metric(  # mean absolute error of the true class's probability
  abbrev = "ProbErr",
  initialize = function() {
    self$total <- 0
    self$rows <- 0
  },
  update = function(preds, target) {
    p <- nnf_softmax(preds, dim = 2)
    truth <- nnf_one_hot(target, num_classes = 3)
    self$total <- self$total + torch_sum(torch_abs(p - truth) * truth)$item()
    self$rows <- self$rows + preds$shape[1]
  },
  compute = function() self$total / self$rows
)
# the same counts, updated once every 3 batches (on the gathered global batches under DDP)
hits3 <- luz_metric(inherit = hits, abbrev = "Hits3", update_every = 3)

# an R callback: keeps each epoch's valid loss and counts the batches it saw
tracker <- luz_callback(
  "tracker",
  initialize = function() {
    self$losses <- numeric()
    self$batches <- 0
  },
  on_train_batch_end = function() self$batches <- self$batches + 1,
  on_epoch_end = function() self$losses <- c(self$losses, ctx$get_metric("loss", "valid"))
)

fit_once <- function(batch_size, cb, verbose = FALSE) {
  torch_manual_seed(SEED)
  net %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam,
          metrics = list(hits(), prob_err(), hits3(), luz_metric_accuracy())) %>%
    set_opt_hparams(lr = 0.05) %>%
    fit(list(train$x, train$y), epochs = 3, valid_data = list(valid$x, valid$y), callbacks = list(cb),
        verbose = verbose, dataloader_options = list(batch_size = batch_size))
}

# One process with the global batch: the engine sees no launcher while WORLD_SIZE is hidden.
single_process <- function(expr) {
  saved <- py_env$pop("WORLD_SIZE")
  on.exit(py_env$`__setitem__`("WORLD_SIZE", saved))
  expr
}

weights <- function(fitted) {
  lapply(fitted$model$parameters, function(p) as.numeric(as_array(p$detach())))
}

compare <- function(ddp, ref, problems = character()) {
  for (phase in c("train", "valid")) {
    got <- ddp$records$metrics[[phase]]
    want <- ref$records$metrics[[phase]]
    if (length(got) != length(want)) {
      problems <- c(problems, sprintf("%s: %d epochs recorded, expected %d", phase, length(got), length(want)))
      next
    }
    for (e in seq_along(want)) {
      if (!identical(names(got[[e]]), names(want[[e]]))) {
        problems <- c(problems, sprintf("%s epoch %d: metrics %s != %s", phase, e,
                                        toString(names(got[[e]])), toString(names(want[[e]]))))
        next
      }
      for (key in names(want[[e]])) {
        if (!(abs(got[[e]][[key]] - want[[e]][[key]]) <= TOL)) {
          problems <- c(problems, sprintf("%s epoch %d %s: %.7f != %.7f", phase, e, key,
                                          got[[e]][[key]], want[[e]][[key]]))
        }
      }
    }
  }
  wd <- weights(ddp)
  wr <- weights(ref)
  for (name in names(wr)) {
    d <- max(abs(wd[[name]] - wr[[name]]))
    if (!(d <= TOL)) problems <- c(problems, sprintf("weight %s differs by %.2e", name, d))
  }
  problems
}

check_r_pieces <- function() {
  cb_ddp <- tracker()
  ddp <- fit_once(B, cb_ddp)
  cb_ref <- tracker()
  ref <- single_process(fit_once(world * B, cb_ref))
  problems <- compare(ddp, ref)
  if (max(abs(cb_ddp$losses - cb_ref$losses)) > TOL || length(cb_ddp$losses) != 3) {
    problems <- c(problems, sprintf("callback's valid losses %s != %s", toString(cb_ddp$losses),
                                    toString(cb_ref$losses)))
  }
  if (cb_ddp$batches != cb_ref$batches) {  # each rank has the global batch count: 3 epochs x 6
    problems <- c(problems, sprintf("callback saw %d batches, expected %d", cb_ddp$batches, cb_ref$batches))
  }
  path <- file.path(tempdir(), "ddp-model.pt")  # a directory of this process's own
  luz_save(ddp, path)
  if (file.exists(path) != (rank == 0)) {
    problems <- c(problems, sprintf("luz_save() on rank %d: file written = %s", rank, file.exists(path)))
  }
  if (inherits(ddp$model, "python.builtin.object") &&
      inherits(ddp$model, "torch.nn.parallel.distributed.DistributedDataParallel")) {
    problems <- c(problems, "fitted$model is the DDP wrapper")
  }
  problems
}

# An R dataset() + dataloader() (not shuffled): the engine gives each rank its share of the rows.
rows <- dataset(
  "rows",
  initialize = function(d) {
    self$x <- torch_tensor(d$x)
    self$y <- torch_tensor(d$y)
  },
  .getitem = function(i) list(self$x[i, ], self$y[i]),
  .length = function() self$x$shape[1]
)

check_r_dataset <- function() {
  fit_rows <- function(batch_size) {
    torch_manual_seed(SEED)
    net %>%
      setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam, metrics = list(hits(), prob_err())) %>%
      set_opt_hparams(lr = 0.05) %>%
      fit(dataloader(rows(train), batch_size = batch_size), epochs = 2,
          valid_data = dataloader(rows(valid), batch_size = batch_size), verbose = FALSE)
  }
  ddp <- fit_rows(B)
  ref <- single_process(fit_rows(world * B))
  compare(ddp, ref)
}

# A shuffled dataloader(): the engine gives it a DistributedSampler whose seed (drawn from torch's RNG,
# rank 0's) is shared; the reference is one process reading the same order (a sampler of one replica).
sampler_spy <- luz_callback(
  "sampler_spy",
  initialize = function() self$seen <- list(),
  on_train_begin = function() {
    s <- ctx$data$sampler
    self$seen[[length(self$seen) + 1]] <- list(class = class(s)[1], seed = s$seed, epoch = s$epoch)
  }
)

check_r_dataset_shuffled <- function() {
  fit_loader <- function(loader, cb) {
    torch_manual_seed(SEED)
    net %>%
      setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam, metrics = list(hits())) %>%
      set_opt_hparams(lr = 0.05) %>%
      fit(loader, epochs = 2, verbose = FALSE, callbacks = list(cb))
  }
  spy <- sampler_spy()
  ddp <- fit_loader(dataloader(rows(train), batch_size = B, shuffle = TRUE), spy)
  problems <- character()
  classes <- vapply(spy$seen, function(s) s$class, "")
  epochs <- vapply(spy$seen, function(s) s$epoch, 1)
  if (!all(grepl("DistributedSampler", classes)) || !identical(as.numeric(epochs), c(1, 2))) {
    problems <- c(problems, sprintf("train sampler per epoch: %s, epochs %s", toString(classes), toString(epochs)))
  }
  seed <- spy$seen[[1]]$seed
  samplers <- reticulate::import("torch.utils.data")
  one <- rows(train)
  ref <- single_process(fit_loader(dataloader(one, batch_size = world * B, sampler = samplers$DistributedSampler(
    one, num_replicas = 1L, rank = 0L, shuffle = TRUE, seed = seed)), sampler_spy()))
  c(problems, compare(ddp, ref))
}

# luz's custom step(): the forward pass goes through ctx$model (the DDP wrapper), so gradients average.
step_net <- nn_module(
  "step_net",
  inherit = net,
  step = function() {
    ctx$loss <- list()
    pred <- ctx$model(ctx$input)
    loss <- ctx$loss_fn(pred, ctx$target)
    if (ctx$training) {
      ctx$opt$zero_grad()
      loss$backward()
      ctx$opt$step()
    }
    ctx$loss[["opt"]] <- loss$detach()
    ctx$pred <- pred
  }
)

check_r_custom_step <- function() {
  fit_step <- function(batch_size) {
    torch_manual_seed(SEED)
    step_net %>%
      setup(loss = nn_cross_entropy_loss(), optimizer = optim_sgd, metrics = list(hits())) %>%
      set_opt_hparams(lr = 0.1, momentum = 0.9) %>%
      fit(list(train$x, train$y), epochs = 2, valid_data = list(valid$x, valid$y), verbose = FALSE,
          dataloader_options = list(batch_size = batch_size))
  }
  ddp <- fit_step(B)
  ref <- single_process(fit_step(world * B))
  compare(ddp, ref)
}

check_rank0_output <- function() {
  out <- character()
  msg <- capture.output(out <- capture.output(invisible(fit_once(B, tracker(), verbose = TRUE))), type = "message")
  text <- c(out, msg)
  if (rank == 0 && !any(grepl("Epoch 3/3", text, fixed = TRUE))) {
    return(sprintf("rank 0 printed no progress: %s", paste(text, collapse = "\\n")))
  }
  if (rank != 0 && length(text) > 0) {
    return(sprintf("rank %d printed: %s", rank, paste(text, collapse = "\\n")))
  }
  character()
}

checks <- list(check_r_pieces = check_r_pieces, check_r_dataset = check_r_dataset,
               check_r_dataset_shuffled = check_r_dataset_shuffled, check_r_custom_step = check_r_custom_step, check_rank0_output = check_rank0_output)
failed <- 0
for (name in names(checks)) {
  problems <- checks[[name]]()
  if (length(problems)) failed <- failed + 1
  if (length(problems) || rank == 0) {
    cat(sprintf("[rank %d] %s: %s\n", rank, name, if (length(problems)) "FAILED" else "ok"))
    for (p in problems) cat("    ", p, "\n")
  }
}
if (rank == 0) cat(sprintf("ddp (R): %d passed, %d failed\n", length(checks) - failed, failed))
quit(status = if (failed) 1 else 0)
