# Parameter initialization (nn_init_*) and gradient utilities (nn_utils_*).
# Each is one line over torch.nn.init / torch.nn.utils; all modify `tensor`
# in place (under no_grad) and return it invisibly.

.init <- function(name, tensor, ...) invisible(.pycall(reticulate::py_get_attr(py_module("torch")$nn$init, name), tensor, ...))

#' Initialize tensors in place
#'
#' R torch's `nn_init_*()` functions over `torch.nn.init`.
#'
#' @param tensor A tensor (usually a parameter such as `self$fc$weight`).
#' @param mean,std,a,b,val,gain,mode,nonlinearity Distribution parameters, as in R torch.
#' @return `tensor`, invisibly.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   fc <- nn_linear(3, 2)
#'   nn_init_zeros_(fc$bias)
#'   nn_init_xavier_uniform_(fc$weight)
#'   fc$bias
#' }
#' @name nn_init
NULL

#' @rdname nn_init
#' @export
nn_init_normal_ <- function(tensor, mean = 0, std = 1) .init("normal_", tensor, mean = mean, std = std)
#' @rdname nn_init
#' @export
nn_init_uniform_ <- function(tensor, a = 0, b = 1) .init("uniform_", tensor, a = a, b = b)
#' @rdname nn_init
#' @export
nn_init_constant_ <- function(tensor, val) .init("constant_", tensor, val = val)
#' @rdname nn_init
#' @export
nn_init_zeros_ <- function(tensor) .init("zeros_", tensor)
#' @rdname nn_init
#' @export
nn_init_ones_ <- function(tensor) .init("ones_", tensor)
#' @rdname nn_init
#' @export
nn_init_xavier_uniform_ <- function(tensor, gain = 1) .init("xavier_uniform_", tensor, gain = gain)
#' @rdname nn_init
#' @export
nn_init_xavier_normal_ <- function(tensor, gain = 1) .init("xavier_normal_", tensor, gain = gain)
#' @rdname nn_init
#' @export
nn_init_kaiming_uniform_ <- function(tensor, a = 0, mode = "fan_in", nonlinearity = "leaky_relu")
  .init("kaiming_uniform_", tensor, a = a, mode = mode, nonlinearity = nonlinearity)
#' @rdname nn_init
#' @export
nn_init_kaiming_normal_ <- function(tensor, a = 0, mode = "fan_in", nonlinearity = "leaky_relu")
  .init("kaiming_normal_", tensor, a = a, mode = mode, nonlinearity = nonlinearity)

#' Clip gradients
#'
#' @param parameters A tensor or a list of tensors (e.g. `model$parameters`).
#' @param max_norm,norm_type Maximum norm and norm type (`nn_utils_clip_grad_norm_()`).
#' @param clip_value Maximum absolute value (`nn_utils_clip_grad_value_()`).
#' @return The total norm (a tensor) for `nn_utils_clip_grad_norm_()`, `NULL` otherwise.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   fc <- nn_linear(2, 1)
#'   fc(torch_ones(1, 2))$sum()$backward()
#'   nn_utils_clip_grad_norm_(fc$parameters, max_norm = 0.1)
#' }
#' @export
nn_utils_clip_grad_norm_ <- function(parameters, max_norm, norm_type = 2) {
  params <- if (is.list(parameters)) unname(parameters) else parameters
  .pycall(py_module("torch")$nn$utils$clip_grad_norm_, params, max_norm = max_norm, norm_type = norm_type)
}

#' @rdname nn_utils_clip_grad_norm_
#' @export
nn_utils_clip_grad_value_ <- function(parameters, clip_value) {
  params <- if (is.list(parameters)) unname(parameters) else parameters
  invisible(.pycall(py_module("torch")$nn$utils$clip_grad_value_, params, clip_value = clip_value))
}
