# luz's built-in callbacks: the engine's classes (pyluz.callbacks.*) with luz's argument names.
# Each function returns the engine callback itself, ready for `fit(callbacks = list(...))`.

engine_callback <- function(class_name, args) {
  args <- as_py_hparams(args[!vapply(args, is.null, logical(1))])
  engine_call_kwargs(engine_module("callbacks")[[class_name]], list(), args, call = rlang::caller_env())
}

#' Early stopping callback
#'
#' Stops training when a monitored metric stops improving. Runs after the other callbacks
#' (weight `Inf`) and calls the `on_early_stopping` breakpoint when it stops.
#'
#' @param monitor `"<set>_<metric>"`, e.g. `"valid_loss"` or `"train_acc"` (case-insensitive;
#'   `"train_loss_<opt>"` for one optimizer's loss).
#' @param min_delta Minimum change that counts as an improvement.
#' @param patience Number of epochs without improvement before stopping (`0`: stop at the first
#'   epoch without improvement).
#' @param mode `"min"`, `"max"` or `"zero"` (closer to zero is better).
#' @param baseline Initial best value, or `NULL`.
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_early_stopping(monitor = "valid_loss", patience = 2)
#' }
#' @family luz_callbacks
#' @export
luz_callback_early_stopping <- function(monitor = "valid_loss", min_delta = 0, patience = 0, mode = "min",
                                        baseline = NULL) {
  engine_callback("EarlyStopping", list(monitor = monitor, min_delta = min_delta, patience = patience,
                                        mode = mode, baseline = baseline))
}

#' Checkpoint callback
#'
#' Saves checkpoints (model, optimizers, callbacks, records) at the end of epochs. A `path`
#' ending in `/` is a directory and gets the file name
#' `"epoch-{epoch:02d}-{monitor}-{monitor_value:.3f}.pt"`; `{epoch}` and `{monitor}` templates
#' are filled in. Load them with [luz_load_checkpoint()].
#'
#' @param path File path (may contain templates) or directory.
#' @param monitor Metric deciding which checkpoint is the best (see
#'   [luz_callback_early_stopping()]).
#' @param save_best_only If `TRUE`, save only when the monitored metric improves.
#' @inheritParams luz_callback_early_stopping
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_model_checkpoint(path = file.path(tempdir(), "checkpoints/"))
#' }
#' @family luz_callbacks
#' @export
luz_callback_model_checkpoint <- function(path, monitor = "valid_loss", save_best_only = FALSE, mode = "min",
                                          min_delta = 0) {
  engine_callback("ModelCheckpoint", list(path = path.expand(path), monitor = monitor,
                                          save_best_only = save_best_only, mode = mode, min_delta = min_delta))
}

#' Keep the best model
#'
#' Remembers the weights of the epoch with the best monitored metric and restores them when
#' training ends.
#'
#' @inheritParams luz_callback_model_checkpoint
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_keep_best_model(monitor = "valid_acc", mode = "max")
#' }
#' @family luz_callbacks
#' @export
luz_callback_keep_best_model <- function(monitor = "valid_loss", mode = "min", min_delta = 0) {
  engine_callback("KeepBestModel", list(monitor = monitor, mode = mode, min_delta = min_delta))
}

#' Learning rate scheduler callback
#'
#' Builds `lr_scheduler(optimizer, ...)` when training starts and steps it at the breakpoint
#' `call_on`. Schedulers such as [lr_reduce_on_plateau()] get the epoch's loss.
#'
#' @param lr_scheduler A scheduler constructor such as `lr_step` or `lr_one_cycle`, or a Python
#'   scheduler class.
#' @param ... Arguments of the scheduler (e.g. `step_size = 5`).
#' @param call_on Breakpoint at which the scheduler steps (e.g. `"on_train_batch_end"`).
#' @param opt_name Name of the optimizer to schedule when the model has several.
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_lr_scheduler(lr_step, step_size = 2, gamma = 0.5)
#' }
#' @family luz_callbacks
#' @export
luz_callback_lr_scheduler <- function(lr_scheduler, ..., call_on = "on_epoch_end", opt_name = NULL) {
  scheduler <- compat_py_object(lr_scheduler)
  if (is.null(scheduler)) scheduler <- as_engine_function(lr_scheduler, "lr_scheduler")
  kwargs <- named_dots("luz_callback_lr_scheduler", ...)
  # R torch's schedulers print their changes with `verbose = TRUE`; the engine reports each step
  report <- if (isTRUE(kwargs$verbose)) py_function(report_lr, "lr report", returns = FALSE)
  kwargs$verbose <- NULL
  engine_callback("LRScheduler", c(list(scheduler = scheduler, call_on = call_on, opt_name = opt_name,
                                        report = report), kwargs))
}

# R torch's verbose lines for a scheduler step.
report_lr <- function(step, group, lr, by_metric) {
  if (by_metric) {
    rlang::inform(sprintf("Epoch %d: reducing learning rate of group %d to %.4e", as.integer(step),
                          as.integer(group), lr))
  } else {
    rlang::inform(sprintf("Adjusting learning rate of group %d to %.4f", as.integer(group), lr))
  }
}

#' CSV logger callback
#'
#' Writes the metrics of every epoch and set to a CSV file (`epoch`, `set`, then one column per
#' metric).
#'
#' @param path File path.
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_csv_logger(file.path(tempdir(), "log.csv"))
#' }
#' @family luz_callbacks
#' @export
luz_callback_csv_logger <- function(path) {
  engine_callback("CSVLogger", list(path = path.expand(path)))
}

#' TensorBoard logging callback
#'
#' Logs the metrics (`train/loss`, `valid/acc`, ...) of every epoch, and optionally histograms of
#' the parameters, as TensorBoard event files (needs the Python package `tensorboard`).
#'
#' @param logdir Directory of the event files.
#' @param histograms `TRUE` to log histograms of all parameters, or a character vector of
#'   parameter names.
#' @param ... Currently unused.
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_tfevents(logdir = file.path(tempdir(), "logs"))
#' }
#' @family luz_callbacks
#' @export
luz_callback_tfevents <- function(logdir = "logs", histograms = FALSE, ...) {
  rlang::check_dots_empty()
  engine_callback("TensorBoard", list(logdir = path.expand(logdir),
                                      histograms = if (is.character(histograms)) as.list(histograms) else histograms))
}

#' Gradient clipping callback
#'
#' Clips the norm of the gradients before each optimizer step.
#'
#' @param max_norm Maximum norm of the gradients.
#' @param norm_type Type of the norm (`2` is the Euclidean norm; `Inf` the maximum).
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_gradient_clip(max_norm = 1)
#' }
#' @family luz_callbacks
#' @export
luz_callback_gradient_clip <- function(max_norm = 1, norm_type = 2) {
  engine_callback("GradientClip", list(max_norm = max_norm, norm_type = norm_type))
}

#' Mixup callback
#'
#' Mixup data augmentation: mixes each training batch with a shuffled copy of itself, with
#' weights drawn from Beta(`alpha`, `alpha`). Use it with [nn_mixup_loss()] (or
#' `auto_loss = TRUE`) and put label metrics in `valid_metrics` of [luz_metric_set()].
#'
#' @param alpha Parameter of the Beta distribution.
#' @param ... Must be empty.
#' @param run_valid Whether to mix validation batches too.
#' @param auto_loss Whether to wrap the loss so that it understands mixed targets.
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_mixup(alpha = 0.4, auto_loss = TRUE)
#' }
#' @family luz_callbacks
#' @export
luz_callback_mixup <- function(alpha = 0.4, ..., run_valid = FALSE, auto_loss = FALSE) {
  rlang::check_dots_empty()
  engine_callback("MixUp", list(alpha = as.double(alpha), run_valid = run_valid, auto_loss = auto_loss))
}

#' Mixed precision callback
#'
#' Trains with automatic mixed precision: float16 with a gradient scaler on CUDA, bfloat16 on
#' the CPU.
#'
#' @param ... Arguments of the gradient scaler (e.g. `enabled = FALSE`).
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_mixed_precision()
#' }
#' @family luz_callbacks
#' @export
luz_callback_mixed_precision <- function(...) {
  engine_callback("MixedPrecision", named_dots("luz_callback_mixed_precision", ...))
}

#' Resume training after a crash
#'
#' Writes a checkpoint at the end of every epoch; when training is started again with the same
#' `path`, it continues from the last finished epoch (same final weights as an uninterrupted
#' run). The file is removed when training finishes.
#'
#' With `every_n_steps` and/or `every_seconds` it also writes checkpoints inside an epoch (the
#' running metrics, the position in the epoch's data order and every RNG state, R's
#' `.Random.seed` included), so a crash loses at most those steps and the re-run still ends
#' with the weights of an uninterrupted run. They are written by a background thread; training
#' waits only while the state is copied.
#'
#' @param path Checkpoint file.
#' @param every_n_steps,every_seconds `NULL` (the default: only at the end of each epoch), or
#'   also checkpoint inside an epoch after this many training steps / seconds since the last write.
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_auto_resume(path = file.path(tempdir(), "state.pt"))
#'   every_100 <- luz_callback_auto_resume(file.path(tempdir(), "state2.pt"), every_n_steps = 100)
#' }
#' @family luz_callbacks
#' @export
luz_callback_auto_resume <- function(path = "./state.pt", every_n_steps = NULL, every_seconds = NULL) {
  engine_callback("AutoResume", list(
    path = path.expand(path),
    every_n_steps = every_n_steps,
    every_seconds = every_seconds
  ))
}

#' Resume from a checkpoint
#'
#' Loads a checkpoint when training begins. `path` may be a directory: the last checkpoint in
#' it (sorted by name) is used, resolved when training begins.
#'
#' @param path Checkpoint file or directory.
#' @param ... Must be empty.
#' @param restore_model_state,restore_records,restore_optimizer_state,restore_callbacks_state
#'   What to restore.
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_resume_from_checkpoint(file.path(tempdir(), "checkpoints/"))
#' }
#' @family luz_callbacks
#' @export
luz_callback_resume_from_checkpoint <- function(path, ..., restore_model_state = TRUE, restore_records = FALSE,
                                                restore_optimizer_state = FALSE,
                                                restore_callbacks_state = FALSE) {
  rlang::check_dots_empty()
  engine_callback("ResumeFromCheckpoint", list(
    path = path.expand(path), restore_model_state = restore_model_state, restore_records = restore_records,
    restore_optimizer_state = restore_optimizer_state, restore_callbacks_state = restore_callbacks_state
  ))
}

#' Gradient accumulation callback
#'
#' Steps the optimizer every `steps` batches only (gradients of the batches in between add up),
#' as a batch `steps` times larger would. Not in luz.
#'
#' @param steps Number of batches per optimizer step.
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_gradient_accumulation(steps = 4)
#' }
#' @family luz_callbacks
#' @export
luz_callback_gradient_accumulation <- function(steps) {
  engine_callback("GradientAccumulation", list(steps = steps))
}

#' Stop training on a non-finite loss
#'
#' Stops training cleanly as soon as the loss is `NaN` or infinite. Not in luz.
#'
#' @return An engine callback to pass to [fit()].
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_terminate_on_nan()
#' }
#' @family luz_callbacks
#' @export
luz_callback_terminate_on_nan <- function() {
  engine_callback("TerminateOnNaN", list())
}

#' Default callbacks
#'
#' The callbacks every `fit()` starts with; you don't need to pass them.
#' `luz_callback_profile()` records timings, `luz_callback_train_valid()` switches between
#' training and evaluation mode, `luz_callback_progress()` prints progress and
#' `luz_callback_interrupt()` turns an interrupt (Ctrl-C) into a normal end of training.
#'
#' @return An engine callback.
#' @examples
#' if (pyluz_engine_available()) {
#'   cb <- luz_callback_profile()
#' }
#' @family luz_callbacks
#' @export
luz_callback_profile <- function() engine_callback("Profile", list())

#' @rdname luz_callback_profile
#' @export
luz_callback_train_valid <- function() engine_callback("TrainValid", list())

#' @rdname luz_callback_profile
#' @export
luz_callback_progress <- function() engine_callback("Progress", list())

#' @rdname luz_callback_profile
#' @export
luz_callback_interrupt <- function() engine_callback("Interrupt", list())

#' Mixup loss and mixing
#'
#' `nn_mixup_loss(loss)` wraps a loss so that it understands the targets of mixed batches
#' (`list(list(y1, y2), weight)`): it interpolates the per-sample losses. `nnf_mixup(x, y,
#' weight)` mixes every sample of `x` with a random other sample of the batch.
#'
#' @param loss A loss module with a `reduction` field, e.g. `nn_cross_entropy_loss()`.
#' @param x Batch of inputs.
#' @param y Batch of targets.
#' @param weight Per-sample mixing weights (length: the batch size).
#' @return `nn_mixup_loss()`: a loss module. `nnf_mixup()`: `list(x = mixed_x, y = list(ys =
#'   list(y1, y2), weight = weight))`.
#' @examples
#' if (pyluz_engine_available()) {
#'   loss <- nn_mixup_loss(nn_cross_entropy_loss())
#' }
#' @export
nn_mixup_loss <- function(loss) {
  engine_call(engine_module("callbacks")$MixupLoss, as_engine_loss(loss))
}

#' @rdname nn_mixup_loss
#' @export
nnf_mixup <- function(x, y, weight) {
  if (!is_py(weight)) weight <- as.list(as.double(weight))
  out <- engine_call(engine_module("callbacks")$mixup, x, y, weight)
  list(x = out[[1]], y = list(ys = list(y1 = out[[2]][[1]][[1]], y2 = out[[2]][[1]][[2]]),
                              weight = out[[2]][[2]]))
}
