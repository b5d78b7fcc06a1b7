#' Fit a model
#'
#' Trains a module prepared with [setup()], as luz's `fit()`. The loop runs in the Python
#' engine; R callbacks, metrics and modules are called from it. As in luz, the model is built
#' before `valid_data` and then `data` are evaluated, so with the same seeds the initial weights
#' are luz's whatever making the data draws.
#'
#' @param object A `luz_module_generator` (from [setup()]).
#' @param data Training data: a `dataloader()`, a `dataset()`/`tensor_dataset()`, a list of
#'   arrays/matrices/tensors sharing the first dimension (`list(x, y)`), or an array. In-memory
#'   data (arrays, tensors, `tensor_dataset()`) is batched by the engine without per-item calls;
#'   R doubles become float32 tensors and R integers int64 tensors.
#' @param epochs Number of epochs, or `c(min_epochs, max_epochs)`.
#' @param callbacks A list of callbacks (e.g. `list(luz_callback_early_stopping())`), or one.
#' @param valid_data Validation data (same kinds as `data`), or a fraction in `[0, 1)` of
#'   `data` to hold out at random (not with a dataloader); the rows are drawn with
#'   `sample.int()`, as luz draws them, so `set.seed()` picks luz's rows.
#' @param accelerator An [accelerator()]; by default the fastest device available.
#' @param verbose Whether to print progress; `NULL` means `interactive()`.
#' @param ... Must be empty.
#' @param capture Whether to trace the forward of an `nn_module()` defined in R (see "Tracing");
#'   `NULL` takes the value given to [setup()] (`FALSE` by default).
#' @param dataloader_options Dataloader arguments (e.g. `list(batch_size = 64)`) for data that
#'   is not a dataloader. Defaults: batch size 32; training data shuffled, last incomplete batch
#'   dropped.
#' @return A `luz_module_fitted` object: `$model`, `$records`, `$ctx`, `$capture` (with
#'   `capture = TRUE`: what tracing did, one row per key; see "Tracing"); use it with
#'   [predict()][predict.luz_module_fitted], [evaluate()], [get_metrics()], `print()`, `plot()`.
#' @section Tracing:
#' Every tensor operation of an R `forward()` crosses from R to Python. With `capture = TRUE`, the
#' forward of an `nn_module()` defined in R is traced once per key -- training or evaluation mode
#' and the input's shapes, dtypes and devices -- like `jit_trace()`: the tensor operations it runs are
#' recorded, with the module's live parameters and buffers as inputs, and later batches with that key
#' replay the recording without running R. Parameters, buffers, `state_dict()` and
#' `train()`/`eval()` stay those of the module; dropout draws the same random numbers and the
#' trained weights are the same, bit for bit, as without tracing.
#'
#' `fitted$capture` tells what ran, one row per key (over the fit and the later [predict()] /
#' [evaluate()] calls, which trace too unless given `capture = FALSE`): `status` is `"traced"` (a
#' recording is in use: the key's calls replay it; `traced` is `TRUE`), `"eager"` (the key runs the
#' R forward; `reason` says why) or `"dropped"` (its recording was dropped, `reason` says why; the
#' next call traces again); `traces`, `drops`, `replays` and `eager_calls` count what happened. The
#' same is printed on a `Tracing:` line when `verbose`.
#'
#' A key runs the R forward instead when the forward reads a value back into R (`$item()`, `as_array()`, `if` on a
#' tensor), uses `ctx`, `private`, `<<-`, R's random numbers, prints, or assigns `self$...` fields;
#' after more than 8 input signatures (variable-length inputs); or when tracing fails. Assigning a
#' module field after tracing drops the recordings. What tracing can't see: in-place edits of a
#' parameter's `$data`, attributes set from Python, values read from global variables (frozen when
#' traced), and autocast (mixed precision) regions.
#' @examples
#' \dontrun{
#' fitted <- net %>%
#'   setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam) %>%
#'   set_hparams(num_class = 10) %>%
#'   fit(train_dl, epochs = 10, valid_data = test_dl)
#' }
#' @export
fit <- function(object, ...) UseMethod("fit")

#' @rdname fit
#' @export
fit.luz_module_generator <- function(object, data, epochs = 10, callbacks = NULL, valid_data = NULL,
                                     accelerator = NULL, verbose = NULL, ..., capture = NULL,
                                     dataloader_options = NULL) {
  rlang::check_dots_empty()
  trace <- capture_callback(as_capture(capture, null_ok = TRUE) %||% isTRUE(object$r_setup$capture))
  # A few rows of the model's input, kept so `luz_save()` can export an nn_module() as a program.
  keep_example <- engine_module("callbacks")$KeepExampleInput()
  py <- engine_call(
    pyluz_engine()$fit,
    object$py,
    deferred_data(data, "data", as_engine_data),
    epochs = as_epochs(epochs),
    callbacks = c(as_engine_callbacks(callbacks), list(keep_example), ctx_binder(object$ctx_env), trace),
    valid_data = deferred_data(valid_data, "valid_data", as_engine_valid),
    accelerator = as_engine_accelerator(accelerator),
    verbose = as_verbose(verbose),
    dataloader_options = as_py_dataloader_options(dataloader_options)
  )
  reticulate::py_set_attr(py, "example_input", reticulate::py_get_attr(keep_example, "example"))
  capture_message(trace, as_verbose(verbose))
  new_fitted(py, object$r_setup, object$owner)
}

#' @export
fit.default <- function(object, ...) {
  rlang::abort(sprintf("`fit()` expects the result of `setup()`, got an object of class <%s>.",
                       paste(class(object), collapse = "/")), class = "value_error")
}

# luz accepts TRUE/FALSE, 0/1 (its examples write `verbose = 0`) and NULL (interactive()).
as_verbose <- function(verbose) {
  if (is.null(verbose)) return(interactive())
  if (is.numeric(verbose) && length(verbose) == 1 && verbose %in% c(0, 1)) return(verbose == 1)
  if (!(is.logical(verbose) && length(verbose) == 1 && !is.na(verbose))) {
    rlang::abort("`verbose` must be TRUE, FALSE, 0, 1 or NULL.", class = "value_error")
  }
  verbose
}

as_epochs <- function(epochs) {
  if (is.numeric(epochs) && length(epochs) %in% 1:2 && is_whole(as.double(epochs))) {
    epochs <- as.integer(epochs)
    return(if (length(epochs) == 1) epochs else as.list(epochs))
  }
  rlang::abort(sprintf("`epochs` must be a whole number or c(min_epochs, max_epochs), got %s.",
                       paste(format(epochs), collapse = ", ")), class = "value_error")
}

# luz builds the model before it evaluates `data` and `valid_data` (lazy arguments), so random
# numbers drawn while the data is made come after the initial weights: the engine converts `x`,
# still a promise, after building the model and optimizers, `valid_data` first. The function the
# engine calls sees this frame only, not the caller's: once `x` is forced, nothing of `fit()`'s
# frame (the fitted model) stays reachable from an R function Python held.
deferred_data <- function(x, argument, convert) {
  force(argument)
  force(convert)
  make <- function() {
    converted <- convert(x, argument)
    x <<- NULL  # the engine has the data now; the R function may outlive the fit
    converted
  }
  engine_module("data")$Deferred(py_function(make, sprintf("the code making `%s`", argument)))
}

# A fraction holds out rows drawn with R's `sample.int()`, as luz draws them (so `set.seed()`
# picks luz's rows and R's RNG moves on as in luz).
as_engine_valid <- function(valid_data, argument = "valid_data") {
  if (is.numeric(valid_data) && length(valid_data) == 1 && is.null(dim(valid_data))) {
    return(engine_module("data")$HeldOut(as.double(valid_data), py_function(sample_rows, "sample.int()")))
  }
  as_engine_data(valid_data, argument)
}

sample_rows <- function(n, size) sample.int(n, size) - 1L  # 0-based for the engine

as_engine_accelerator <- function(accelerator) {
  if (is.null(accelerator) || is_py(accelerator)) return(accelerator)
  rlang::abort("`accelerator` must be created with `accelerator()`.", class = "value_error")
}

# `owner` keeps alive the R functions of setup() that the engine's Fitted holds weakly (bridge.R).
new_fitted <- function(py, r_setup = NULL, owner = NULL) {
  structure(
    # `$records` and `$model` are read from the engine (results.R)
    list(
      ctx = list(hparams = py$hparams, opt_hparams = py$opt_hparams),
      py = py,
      r_setup = r_setup
    ),
    owner = owner,  # an attribute: the names stay luz's
    class = "luz_module_fitted"
  )
}

#' Predictions of a fitted model
#'
#' Runs the model (or its `predict()` method) over `newdata` without gradients.
#'
#' @param object A `luz_module_fitted` object.
#' @param newdata Data, as in [fit()]; only the first element of each batch is used.
#' @param ... `stack` (default `TRUE`): concatenate the batch outputs along the first
#'   dimension; with `FALSE` a list of per-batch outputs is returned. Other named arguments are
#'   passed to the module's `predict()` method.
#' @param callbacks Callbacks to use (the `on_predict_*` breakpoints).
#' @param capture Whether to trace the forward (see "Tracing" in [fit()]): `NULL` (the default)
#'   traces when the fit did, replaying its recordings (the evaluation-mode ones of its validation);
#'   `FALSE` runs the R forward; `TRUE` traces even when the fit did not. The predictions are the
#'   same, bit for bit; `object$capture` tells what ran.
#' @inheritParams fit.luz_module_generator
#' @return A tensor (or a list of per-batch outputs).
#' @importFrom stats predict
#' @examples
#' \dontrun{
#' preds <- predict(fitted, test_dl)
#' }
#' @export
predict.luz_module_fitted <- function(object, newdata, ..., callbacks = list(), accelerator = NULL,
                                      verbose = NULL, dataloader_options = NULL, capture = NULL) {
  capture <- as_capture(capture, null_ok = TRUE)
  trace <- fitted_trace(object$py, capture)
  dots <- rlang::list2(...)
  stack <- dots$stack %||% TRUE
  dots$stack <- NULL
  if (length(dots) && (is.null(names(dots)) || any(!nzchar(names(dots))))) {
    rlang::abort("Extra arguments of `predict()` go to the module's `predict()` method and must be named.",
                 class = "value_error")
  }
  # luz's layout: a list is (x, y, ...) and only x is predicted from (the engine's predict()
  # takes in-memory data as the inputs only).
  if (is.list(newdata) && !is_py(newdata)) newdata <- newdata[1]
  preds <- engine_call_kwargs(object$py$predict, list(as_engine_data(newdata, "newdata")), c(list(
    stack = isTRUE(stack),
    callbacks = as_engine_callbacks(callbacks),
    accelerator = as_engine_accelerator(accelerator),
    verbose = as_verbose(verbose),
    dataloader_options = as_py_dataloader_options(dataloader_options),
    capture = capture
  ), dots))
  capture_message(trace, as_verbose(verbose))
  preds
}

#' Evaluate a fitted model
#'
#' Computes the loss and the metrics of a fitted model on new data (one validation pass).
#'
#' @param object A `luz_module_fitted` object.
#' @param data Data, as in [fit()].
#' @param ... Currently unused.
#' @param metrics Metrics to compute instead of those given to [setup()] (the loss is always
#'   included).
#' @param callbacks Callbacks to use.
#' @param capture Whether to trace the forward, as in [predict()][predict.luz_module_fitted]
#'   (`NULL`: when the fit did).
#' @inheritParams fit.luz_module_generator
#' @return A `luz_module_evaluation`; see [get_metrics()].
#' @examples
#' \dontrun{
#' evaluation <- fitted %>% evaluate(data = valid_dl)
#' get_metrics(evaluation)
#' }
#' @export
evaluate <- function(object, data, ..., metrics = NULL, callbacks = list(), accelerator = NULL,
                     verbose = NULL, dataloader_options = NULL, capture = NULL) {
  if (!inherits(object, "luz_module_fitted")) {
    rlang::abort(sprintf("`evaluate()` expects a fitted model (the result of `fit()`), got <%s>.",
                         paste(class(object), collapse = "/")), class = "value_error")
  }
  capture <- as_capture(capture, null_ok = TRUE)
  trace <- fitted_trace(object$py, capture)
  py <- engine_call(
    object$py$evaluate,
    as_engine_data(data, "data"),
    metrics = as_engine_metrics(metrics),
    callbacks = as_engine_callbacks(callbacks),
    accelerator = as_engine_accelerator(accelerator),
    verbose = as_verbose(verbose),
    dataloader_options = as_py_dataloader_options(dataloader_options),
    capture = capture
  )
  capture_message(trace, as_verbose(verbose))
  structure(list(records = py$records, py = py), class = "luz_module_evaluation")
}
