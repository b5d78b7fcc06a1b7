#' Save and load fitted models
#'
#' `luz_save()` writes a fitted model to one file in the engine's format (safetensors weights
#' plus JSON metadata: records, hyperparameters and how to rebuild the module), so the same file
#' loads in Python with `pyluz.load(path)`. `luz_load()` reads it back. A Python module class is
#' rebuilt only from a module already imported in this session (e.g. with `reticulate::import()`;
#' a module a file names is never imported), after checking its shapes against the file, and only
#' regular files are read.
#'
#' A model defined in R (`nn_module()`) is stored with its R definition (the module generator,
#' and the loss, optimizer and metrics given to [setup()]), so `luz_load(path)` rebuilds it in any
#' R session, fresh ones included, as luz's: the result predicts and evaluates, with its loss and
#' metrics. A loss that is a Python object (such as `nn_mse_loss()`) is rebuilt by evaluating the
#' `setup()` argument again (`nn_mse_loss()`) when the object itself no longer exists. A module
#' that is a Python class is found among the modules imported in this session.
#'
#' **Trust.** Like `readRDS()`, which luz's `luz_load()` uses, `luz_load()` of an R-defined model
#' runs the R code stored in the file (its `initialize()` when the module is built, its `forward()`
#' when it predicts): load only files you trust. Python never runs that R code: `pyluz.load()`
#' reads an R-defined model only with `module=`, or with `trust_program=True`, which runs the
#' program stored in the file (the forward pass captured with `torch.export` when the model was
#' saved; loading it can run code too, hence the opt-in).
#'
#' `luz_save()` is silent: the program is captured without printing anything, and when the
#' forward pass can't be captured (e.g. it converts tensors to R arrays) the file is saved
#' without one, the reason recorded in its metadata. `verbose = TRUE` says which happened, and
#' why. Files of older pyluz versions, which kept the program in a second file (`<path>.pt2`),
#' still load with `luz_load()`; their program is no longer read.
#'
#' @param obj A `luz_module_fitted` object.
#' @param path File path.
#' @param verbose For `luz_save()`: whether to say if the program of an R-defined model was stored
#'   in the file and, if not, why.
#' @param ... For `luz_save()`: must be empty. For `luz_load()`: `module` (the module definition
#'   or Python class, instead of the stored one), `loss`, `optimizer`, `metrics` as in [setup()]
#'   (instead of the stored ones), and `trust_program` (`TRUE` runs the program saved with an
#'   R-defined model when neither `module` nor an R definition is available; only for trusted
#'   files).
#' @return `luz_save()` returns `obj` invisibly; `luz_load()` a `luz_module_fitted`.
#' @examples
#' if (pyluz_engine_available()) {
#'   x <- matrix(runif(40), 20)
#'   fitted <- nn_linear %>%
#'     setup(loss = nn_mse_loss(), optimizer = optim_sgd) %>%
#'     set_hparams(in_features = 2, out_features = 1) %>%
#'     set_opt_hparams(lr = 0.1) %>%
#'     fit(list(x, x[, 1, drop = FALSE]), epochs = 1, verbose = FALSE,
#'         dataloader_options = list(batch_size = 10))
#'   path <- tempfile(fileext = ".safetensors")
#'   luz_save(fitted, path)
#'   again <- luz_load(path)
#' }
#' @export
luz_save <- function(obj, path, ..., verbose = FALSE) {
  rlang::check_dots_empty()
  check_fitted(obj, "luz_save")
  if (!rlang::is_bool(verbose)) rlang::abort("`verbose` must be `TRUE` or `FALSE`.", class = "value_error")
  path <- path.expand(path)
  engine_call(engine_module("serialization")$save_fitted, obj$py, path, front_end = r_definition_entry(obj))
  if (verbose) {
    meta <- engine_call(engine_module("serialization")$read_metadata, path)
    if (identical(meta$defined_in, "R")) rlang::inform(engine_module("model_file")$program_report(meta, path))
  }
  invisible(obj)
}

#' @rdname luz_save
#' @export
luz_load <- function(path, ...) {
  args <- rlang::list2(...)
  unknown <- setdiff(names(args), c("module", "loss", "optimizer", "metrics", "trust_program"))
  if (length(args) && (is.null(names(args)) || length(unknown) || any(!nzchar(names(args))))) {
    rlang::abort("`...` of `luz_load()` takes only `module`, `loss`, `optimizer`, `metrics` and `trust_program`.",
                 class = "value_error")
  }
  trust <- if (is.null(args$trust_program)) FALSE else args$trust_program
  if (!rlang::is_bool(trust)) {
    rlang::abort("`trust_program` must be `TRUE` or `FALSE`.", class = "value_error")
  }
  stored <- if (is.null(args$module)) read_r_definition(path)
  for (nm in c("module", "loss", "optimizer", "metrics")) if (is.null(args[[nm]])) args[nm] <- list(stored[[nm]])
  owner <- new_owner()  # as in setup(): the Fitted holds these R functions weakly (bridge.R)
  py <- withCallingHandlers(
    engine_call(
      engine_module("serialization")$load, path.expand(path),
      module = if (!is.null(args$module)) as_engine_module(args$module, owner),
      loss = as_engine_loss(args$loss, owner),
      optimizer = as_engine_optimizer(args$optimizer, owner),
      metrics = as_engine_metrics(args$metrics, owner = owner),
      trust_program = trust
    ),
    pyluz_error = function(e) {
      hint <- switch(e$reason %||% "",
        module_needed = "luz_load(path, module = <the nn_module() definition or Python class>).",
        module_or_trust_needed = paste("luz_load(path, module = <the nn_module() definition or Python class>)",
                                       "or luz_load(path, trust_program = TRUE)."))
      if (!is.null(hint)) {
        e$message <- paste0(conditionMessage(e), "\nFrom R: ", hint)
        stop(e)
      }
    }
  )
  new_fitted(py, stored, owner)
}

# The R definition of an R-defined model, as a string for the file's metadata (NULL for Python
# modules: the engine stores their import path). R's ASCII serialization of the setup() arguments.
r_definition_entry <- function(obj) {
  r_setup <- obj$r_setup
  if (is.null(r_setup) || is_py(r_setup$module)) return(NULL)
  list(r_setup = rawToChar(serialize(r_setup, NULL, ascii = TRUE)))
}

# The setup() arguments stored by `luz_save()`, usable in this session: Python objects from
# another session are gone, so a loss is rebuilt from its `setup()` call, other ones dropped.
read_r_definition <- function(path) {
  info <- engine_call(engine_module("serialization")$read_metadata, path.expand(path))
  text <- info$front_end$r_setup
  if (is.null(text)) return(NULL)
  r_setup <- unserialize(charToRaw(text))
  alive <- function(x) !(is_py(x) && reticulate::py_is_null_xptr(x))
  if (!is.null(r_setup$loss) && !alive(r_setup$loss)) {
    r_setup$loss <- tryCatch(eval(r_setup$loss_call, globalenv()), error = function(e) NULL)
  }
  if (!is.null(r_setup$optimizer) && !alive(r_setup$optimizer)) r_setup$optimizer <- NULL
  if (is.list(r_setup$metrics) && !inherits(r_setup$metrics, "luz_metric_set")) {
    r_setup$metrics <- Filter(alive, r_setup$metrics)
  }
  r_setup
}

#' Save and load model weights
#'
#' `luz_save_model_weights()` saves only the weights (the state dict) of a fitted model;
#' `luz_load_model_weights()` loads weights into a fitted model **in place** (its `$model` is
#' changed). Files are safetensors and can be read from Python with
#' `pyluz.serialization.load_model_weights()`.
#'
#' @param obj A `luz_module_fitted` object.
#' @param path File path.
#' @param ... Currently unused.
#' @return `NULL`, invisibly.
#' @examples
#' \dontrun{
#' luz_save_model_weights(fitted, "weights.safetensors")
#' luz_load_model_weights(fitted, "weights.safetensors")
#' }
#' @export
luz_save_model_weights <- function(obj, path) {
  check_fitted(obj, "luz_save_model_weights")
  engine_call(engine_module("serialization")$save_model_weights, obj$py, path.expand(path))
  invisible(NULL)
}

#' @rdname luz_save_model_weights
#' @export
luz_load_model_weights <- function(obj, path, ...) {
  check_fitted(obj, "luz_load_model_weights")
  engine_call(engine_module("serialization")$load_model_weights, obj$py, path.expand(path))
  invisible(NULL)
}

#' Load a checkpoint
#'
#' Loads a checkpoint written by [luz_callback_model_checkpoint()] or
#' [luz_callback_auto_resume()]. Into a fitted model: its weights, in place. Into `ctx` (inside a
#' callback): the parts chosen with the `restore_*` flags.
#'
#' @param obj A `luz_module_fitted` object, or `ctx`.
#' @param path Checkpoint file.
#' @param ... Flags: `restore_model_state`, `restore_records`, `restore_optimizer_state`,
#'   `restore_callbacks_state`, `restore_rng_state`. luz's defaults: for `ctx` everything but the
#'   RNG state, for a fitted model the weights only.
#' @return `NULL`, invisibly.
#' @examples
#' \dontrun{
#' luz_load_checkpoint(fitted, "checkpoints/epoch-03-valid_loss-0.123.pt")
#' }
#' @export
luz_load_checkpoint <- function(obj, path, ...) {
  flags <- rlang::list2(...)
  if (!inherits(obj, "pyluz.context.Context")) check_fitted(obj, "luz_load_checkpoint")
  target <- if (inherits(obj, "luz_module_fitted")) obj$py else obj
  # the engine picks the defaults of the flags not given (luz's: see pyluz.load_checkpoint)
  engine_call_kwargs(engine_module("checkpoints")$load_checkpoint, list(target, path.expand(path)), flags)
  invisible(NULL)
}

check_fitted <- function(obj, fn) {
  if (!inherits(obj, "luz_module_fitted")) {
    rlang::abort(sprintf("`%s()` expects a fitted model (the result of `fit()`), got an object of class <%s>.",
                         fn, paste(class(obj), collapse = "/")), class = "value_error")
  }
  invisible(obj)
}
