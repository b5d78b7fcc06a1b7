# Datasets and data loaders (R torch names) over torch.utils.data.

#' Define a dataset
#'
#' `dataset()` returns a generator; its instances are Python
#' `torch.utils.data.Dataset` objects whose `.getitem(i)` (1-based `i`),
#' `.length()` and optional `.getbatch(indices)` are the R functions given
#' here. Items are usually (named) lists of tensors or R values; R doubles
#' become float32 tensors and R integers int64 when batched.
#'
#' `iterable_dataset()` defines a dataset whose `.iter()` returns an R
#' function producing one item per call and `NULL` (or
#' `coro::exhausted()`) when done; `.length()` is optional.
#'
#' @param name Class name.
#' @param inherit A dataset generator to inherit from, or a Python class.
#' @param ... Named methods and fields (`initialize`, `.getitem`, `.length`, ...).
#' @param private,active Private members and active bindings.
#' @param parent_env Environment the methods' enclosures inherit from.
#' @return A generator of class `dataset_generator`.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   squares <- dataset(
#'     "squares",
#'     initialize = function(n) self$n <- n,
#'     .getitem = function(i) list(x = torch_tensor(i), y = torch_tensor(i^2)),
#'     .length = function() self$n
#'   )
#'   ds <- squares(10)
#'   length(ds)
#'   ds[3]$y
#' }
#' @export
dataset <- function(name = NULL, inherit = NULL, ..., private = NULL, active = NULL,
                    parent_env = parent.frame()) {
  .new_generator("dataset", name, inherit, list(...), private, active, parent_env, "dataset_generator")
}

#' @rdname dataset
#' @export
iterable_dataset <- function(name = NULL, inherit = NULL, ..., private = NULL, active = NULL,
                             parent_env = parent.frame()) {
  members <- list(...)
  .new_generator("iterable_dataset", name, inherit, members, private, active, parent_env,
                 "dataset_generator")
}

# Python-facing version of an iterable dataset's `.iter()`: the R iterator
# function it returns is wrapped so exhaustion is NULL and errors are tagged.
.py_facing_iter <- function(iter_method) {
  force(iter_method)
  r_callable(function() {
    nxt <- iter_method()
    if (!is.function(nxt)) stop(".iter() must return a function that yields items", call. = FALSE)
    r_callable(function() {
      v <- nxt()
      if (is.null(v) || .is_exhausted(v)) NULL else v
    })
  })
}

.is_exhausted <- function(x) {
  is.symbol(x) && identical(as.character(x), ".__exhausted__.")
}

# A batch of an R dataset (a named list on the Python side, split by position as luz splits
# it) comes back to R as the named list it was.
#' @export
py_to_r.pyluz.nested.PositionalDict <- function(x) {
  reticulate::py_to_r(reticulate::import_builtins(convert = FALSE)$dict(x))
}

#' @export
`[.pyluz.interop.torch_class.RDataset` <- function(x, i) {
  st <- .rstate(x)
  if (!is.null(st) && length(i) > 1L && exists(".getbatch", envir = st$pub, inherits = FALSE)) {
    return(get(".getbatch", envir = st$pub)(i))
  }
  if (!is.null(st) && exists(".getitem", envir = st$pub, inherits = FALSE)) {
    if (length(i) > 1L) return(lapply(i, get(".getitem", envir = st$pub)))
    return(get(".getitem", envir = st$pub)(i))
  }
  stop("this dataset has no .getitem method", call. = FALSE)
}

#' @export
length.pyluz.interop.torch_class.RDataset <- function(x) {
  st <- .rstate(x)
  if (!is.null(st) && exists(".length", envir = st$pub, inherits = FALSE)) {
    return(get(".length", envir = st$pub)())
  }
  tryCatch(NextMethod(), error = function(e) NA_integer_)  # R torch: NA when the length is unknown
}

#' @export
`[.torch.utils.data.dataset.Dataset` <- function(x, i) {
  if (length(i) != 1L) return(lapply(i, function(j) `[.torch.utils.data.dataset.Dataset`(x, j)))
  i <- as.integer(i)
  if (i == 0L) stop("Indexing starts at 1 but found a 0.", call. = FALSE)
  reticulate::py_to_r(reticulate::py_get_item(x, if (i > 0L) i - 1L else i))
}

#' Tensor dataset
#'
#' A dataset of tensors sharing their first dimension; R arrays are converted
#' (doubles to float32, integers to int64). Returns a
#' `torch.utils.data.TensorDataset` (the engine's fast path); items of named
#' arguments are named lists.
#'
#' @param ... Tensors or R arrays/matrices/vectors (optionally named).
#' @return A `TensorDataset`.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   ds <- tensor_dataset(x = matrix(rnorm(20), 10), y = 1:10)
#'   length(ds)
#'   ds[1]
#' }
#' @export
tensor_dataset <- function(...) {
  tensors <- list(...)
  nms <- names(tensors)
  tensors <- lapply(unname(tensors), function(t) if (is_py(t)) t else torch_tensor(t))
  if (is.null(nms)) .pycall(.py("data", "tensor_dataset"), tensors)
  else .pycall(.py("data", "tensor_dataset"), tensors, as.list(nms))
}

#' Subset of a dataset
#'
#' @param dataset A dataset.
#' @param indices 1-based indices.
#' @return A `torch.utils.data.Subset`.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   ds <- tensor_dataset(torch_randn(10, 2))
#'   length(dataset_subset(ds, 1:5))
#' }
#' @export
dataset_subset <- function(dataset, indices) {
  .pycall(.py("data", "subset"), dataset, as.list(as.numeric(indices)))
}

#' Data loaders
#'
#' `dataloader()` builds a Python `torch.utils.data.DataLoader`.
#' `length(dl)` is the number of batches. Iterate with
#' `it <- dataloader_make_iter(dl)` and `dataloader_next(it)` (which returns
#' `completed`, `NULL` by default, when exhausted), or with
#' `loop(for (batch in dl) ...)`.
#'
#' Worker processes (`num_workers > 0`) use Python's default `fork` start
#' method; R's random number generator is reseeded in each worker.
#'
#' @param dataset A dataset (R-defined, `tensor_dataset()` or Python).
#' @param batch_size,shuffle,sampler,batch_sampler,num_workers,collate_fn,pin_memory,drop_last,timeout,worker_init_fn
#'   As in R torch. `collate_fn` and `worker_init_fn` may be R functions.
#' @param worker_globals,worker_packages Ignored (R torch's callr workers).
#' @param ... Passed to `torch.utils.data.DataLoader`.
#' @param dataloader A data loader (or any Python iterable).
#' @param iter An iterator from `dataloader_make_iter()`.
#' @param completed Value returned when the iterator is exhausted.
#' @param x A `for` loop over a data loader (or any Python iterable).
#' @return A DataLoader / an iterator / a batch (an R list of tensors).
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   ds <- tensor_dataset(x = torch_randn(10, 2), y = torch_randn(10))
#'   dl <- dataloader(ds, batch_size = 4)
#'   length(dl)
#'   it <- dataloader_make_iter(dl)
#'   b <- dataloader_next(it)
#'   n <- 0
#'   loop(for (b in dl) n <- n + 1)
#' }
#' @export
dataloader <- function(dataset, batch_size = 1, shuffle = FALSE, sampler = NULL, batch_sampler = NULL,
                       num_workers = 0, collate_fn = NULL, pin_memory = FALSE, drop_last = FALSE,
                       timeout = -1, worker_init_fn = NULL, worker_globals = NULL,
                       worker_packages = NULL, ...) {
  if (is.function(collate_fn) && !is_py(collate_fn)) collate_fn <- r_callable(collate_fn)
  if (is.function(worker_init_fn) && !is_py(worker_init_fn)) worker_init_fn <- r_callable(worker_init_fn)
  reseed <- function(seed) {
    set.seed(seed)
    NULL
  }
  .pycall(.py("data", "dataloader"), dataset,
          batch_size = as.numeric(batch_size), shuffle = isTRUE(shuffle), sampler = sampler,
          batch_sampler = batch_sampler, num_workers = as.numeric(num_workers),
          collate_fn = collate_fn, pin_memory = isTRUE(pin_memory), drop_last = isTRUE(drop_last),
          timeout = as.numeric(timeout), worker_init_fn = worker_init_fn, r_reseed = reseed, ...)
}

#' @rdname dataloader
#' @export
dataloader_make_iter <- function(dataloader) {
  with_r_errors(.pycall(.py("builtins", "iter"), dataloader))
}

#' @rdname dataloader
#' @export
dataloader_next <- function(iter, completed = NULL) {
  r <- with_r_errors(.pycall(.py("data", "iter_next"), iter))
  if (isTRUE(r[[1]])) r[[2]] else completed
}

#' @rdname dataloader
#' @export
loop <- function(x) {
  e <- substitute(x)
  env <- parent.frame()
  if (!is.call(e) || !identical(e[[1]], as.name("for"))) {
    stop("loop() expects a `for` loop: loop(for (batch in dl) ...)", call. = FALSE)
  }
  var <- e[[2]]
  iterable <- eval(e[[3]], env)
  body <- e[[4]]
  if (!is_py(iterable)) {
    eval(e, env)
    return(invisible())
  }
  it <- dataloader_make_iter(iterable)
  done <- new.env()
  expr <- bquote(repeat {
    .(var) <- .(dataloader_next)(.(it), .(done))
    if (identical(.(var), .(done))) break
    .(body)
  })
  eval(expr, env)
  if (exists(as.character(var), envir = env, inherits = FALSE) &&
      identical(get(as.character(var), envir = env), done)) {
    rm(list = as.character(var), envir = env)
  }
  invisible()
}

# R torch: an iterable dataset without `.length()` has length NA (luz's progress bar reads it).
#' @export
length.torch.utils.data.dataset.IterableDataset <- function(x) {
  tryCatch(NextMethod(), error = function(e) NA_integer_)
}

#' @export
length.torch.utils.data.dataloader.DataLoader <- function(x) {
  tryCatch(as.integer(.pycall(.py("builtins", "len"), x)), error = function(e) NA_integer_)  # R torch: NA if unknown
}


#' Is this a dataset or a dataloader?
#' @param x Any object.
#' @return `TRUE` or `FALSE`.
#' @examples
#' if (torch_is_installed()) {
#'   ds <- tensor_dataset(torch_randn(4, 2))
#'   is_dataset(ds)
#'   is_dataloader(dataloader(ds))
#' }
#' @export
is_dataloader <- function(x) inherits(x, "dataloader")

#' @rdname is_dataloader
#' @export
is_dataset <- function(x) inherits(x, "dataset")
