#' Save and load fitted models
#'
#' `luz_save()` writes a fitted model in the engine's file format (safetensors weights plus JSON
#' metadata: records, hyperparameters and how to rebuild the module), so the same file loads in
#' Python with `pyluz.load(path)`. `luz_load()` reads it back; the module is rebuilt from its
#' import path when it is a Python class from a module already imported in this session (e.g. with
#' `reticulate::import()`; a module a file names is never imported), after checking its shapes
#' against the file; for `nn_module()` definitions pass `module =`. Loading never runs code stored
#' in the file, and only regular files are read.
#'
#' A model defined in R (`nn_module()`) is also exported as a program that runs its forward pass
#' without R (`torch.export`, else `torch.jit.trace`), written next to `path` as `<path>.pt2`
#' (or `<path>.jit.pt`; keep the files together). Python loads it with
#' `pyluz.load(path, trust_program=True)` and predicts without R. Loading a program can run code
#' stored in it, so `trust_program = TRUE` is for files you trust only; without it (and without
#' `module`) loading such a file fails with a message saying both options.
#'
#' @param obj A `luz_module_fitted` object.
#' @param path File path.
#' @param ... For `luz_save()`: must be empty. For `luz_load()`: `module` (the module definition
#'   or Python class, when it can't be imported), `loss`, `optimizer`, `metrics` as in
#'   [setup()] (they are not stored in the file; give them to [evaluate()] the loaded model), and
#'   `trust_program` (`TRUE` runs the program saved with an R-defined model when `module` is not
#'   given; only for trusted files).
#' @return `luz_save()` returns `obj` invisibly; `luz_load()` a `luz_module_fitted`.
#' @examples
#' \dontrun{
#' luz_save(fitted, "model.safetensors")
#' fitted <- luz_load("model.safetensors")
#' }
#' @export
luz_save <- function(obj, path, ...) {
  rlang::check_dots_empty()
  check_fitted(obj, "luz_save")
  engine_call(engine_module("serialization")$save_fitted, obj$py, path.expand(path))
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
  py <- withCallingHandlers(
    engine_call(
      engine_module("serialization")$load, path.expand(path),
      module = if (!is.null(args$module)) as_engine_module(args$module),
      loss = as_engine_loss(args$loss),
      optimizer = as_engine_optimizer(args$optimizer),
      metrics = as_engine_metrics(args$metrics),
      trust_program = trust
    ),
    pyluz_error = function(e) {
      if (is.null(args$module) && grepl("module=", conditionMessage(e), fixed = TRUE)) {
        e$message <- paste0(conditionMessage(e), "\nFrom R: luz_load(path, module = <the nn_module() definition ",
                            "or Python class>)",
                            if (grepl("trust_program=True", conditionMessage(e), fixed = TRUE))
                              " or luz_load(path, trust_program = TRUE)",
                            ".")
        stop(e)
      }
    }
  )
  new_fitted(py)
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
#' @param ... Flags for `ctx`: `restore_model_state`, `restore_records`,
#'   `restore_optimizer_state`, `restore_callbacks_state` (luz's defaults: all `TRUE`).
#' @return `NULL`, invisibly.
#' @examples
#' \dontrun{
#' luz_load_checkpoint(fitted, "checkpoints/epoch-03-valid_loss-0.123.pt")
#' }
#' @export
luz_load_checkpoint <- function(obj, path, ...) {
  flags <- rlang::list2(...)
  target <- if (inherits(obj, "luz_module_fitted")) obj$py else obj
  if (is_py(target) && inherits(target, "pyluz.context.Context")) {
    defaults <- list(restore_model_state = TRUE, restore_records = TRUE,
                     restore_optimizer_state = TRUE, restore_callbacks_state = TRUE)
    for (nm in names(defaults)) if (is.null(flags[[nm]])) flags[[nm]] <- defaults[[nm]]
  } else if (!inherits(obj, "luz_module_fitted")) {
    check_fitted(obj, "luz_load_checkpoint")
  }
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
