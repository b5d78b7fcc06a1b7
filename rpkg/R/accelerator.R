#' Create an accelerator
#'
#' Chooses the device training runs on and places the model, optimizers and data there. By
#' default the fastest device available is used (CUDA, then MPS, then the CPU).
#'
#' @param device_placement Whether to move the model and the data to the device.
#' @param cpu If `TRUE`, use the CPU even when a GPU is available.
#' @param cuda_index Index of the CUDA device to use (0-based, as `"cuda:0"`); `NULL` means
#'   the current device.
#' @return An accelerator object (the engine's `Accelerator`): `$device` is the device,
#'   `$prepare(model, optimizers, dataloader, ...)` places them.
#' @examples
#' if (pyluz_engine_available()) {
#'   acc <- accelerator(cpu = TRUE)
#'   acc$device
#' }
#' @export
accelerator <- function(device_placement = TRUE, cpu = FALSE, cuda_index = NULL) {
  check_flag <- function(x, arg) {
    if (!(is.logical(x) && length(x) == 1 && !is.na(x))) {
      rlang::abort(sprintf("`%s` must be TRUE or FALSE.", arg), class = "value_error")
    }
  }
  check_flag(device_placement, "device_placement")
  check_flag(cpu, "cpu")
  if (!is.null(cuda_index)) {
    if (!is_whole(as.double(cuda_index)) || length(cuda_index) != 1 || cuda_index < 0) {
      rlang::abort("`cuda_index` must be NULL or a non-negative whole number.", class = "value_error")
    }
    cuda_index <- as.integer(cuda_index)
  }
  engine_call(pyluz_engine()$Accelerator, device_placement = device_placement, cpu = cpu,
              cuda_index = cuda_index)
}
