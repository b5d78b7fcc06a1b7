#' Create a dataloader from an object
#'
#' Turns data that `fit()` accepts into batches: arrays and matrices, lists of them (`list(x,
#' y)`), tensors, datasets and `tensor_dataset()`s. In-memory data is batched by the engine with
#' one index operation per batch; datasets get a dataloader. Dataloaders are returned as they
#' are.
#'
#' @param x The data.
#' @param ... Dataloader arguments: `batch_size` (default 32), `shuffle` (default `FALSE`),
#'   `drop_last` (default `FALSE`), and for datasets any other `dataloader()` argument.
#' @return An iterable of batches to pass to [fit()], [predict()][predict.luz_module_fitted] or
#'   [evaluate()]; `length()` gives the number of batches.
#' @examples
#' if (pyluz_engine_available()) {
#'   dl <- as_dataloader(list(matrix(runif(20), 10), 1:10), batch_size = 5)
#'   length(dl)
#' }
#' @export
as_dataloader <- function(x, ...) UseMethod("as_dataloader")

#' @rdname as_dataloader
#' @export
as_dataloader.default <- function(x, ...) {
  if (is.null(x)) return(NULL)
  options <- rlang::list2(...)
  data <- engine_module("data")
  if (py_is_instance(x, data$DataLoader) || py_is_instance(x, data$TensorBatches)) {
    return(x)
  }
  defaults <- list(batch_size = 32L, shuffle = FALSE, drop_last = FALSE)
  for (nm in names(defaults)) if (is.null(options[[nm]])) options[[nm]] <- defaults[[nm]]
  engine_call(data$as_batches, as_engine_data(x, "x"),
              as_py_dataloader_options(options), "train", "x")
}
