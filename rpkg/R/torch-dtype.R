# Data types, devices, seeding and autograd mode (R torch names).

.dtype <- function(name) reticulate::py_get_attr(py_module("torch"), name)

#' Tensor data types
#'
#' R torch exposes dtypes as functions: `torch_float()` is PyTorch's
#' `torch.float32`, `torch_long()` is `torch.int64`, and so on.
#'
#' @return A `torch.dtype` (Python object).
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   x <- torch_tensor(1:3)
#'   x$dtype == torch_long()
#'   torch_zeros(2, dtype = torch_double())
#' }
#' @name torch_dtype
NULL

#' @rdname torch_dtype
#' @export
torch_float32 <- function() .dtype("float32")
#' @rdname torch_dtype
#' @export
torch_float <- function() .dtype("float32")
#' @rdname torch_dtype
#' @export
torch_float64 <- function() .dtype("float64")
#' @rdname torch_dtype
#' @export
torch_double <- function() .dtype("float64")
#' @rdname torch_dtype
#' @export
torch_float16 <- function() .dtype("float16")
#' @rdname torch_dtype
#' @export
torch_half <- function() .dtype("float16")
#' @rdname torch_dtype
#' @export
torch_bfloat16 <- function() .dtype("bfloat16")
#' @rdname torch_dtype
#' @export
torch_int32 <- function() .dtype("int32")
#' @rdname torch_dtype
#' @export
torch_int <- function() .dtype("int32")
#' @rdname torch_dtype
#' @export
torch_int64 <- function() .dtype("int64")
#' @rdname torch_dtype
#' @export
torch_long <- function() .dtype("int64")
#' @rdname torch_dtype
#' @export
torch_int16 <- function() .dtype("int16")
#' @rdname torch_dtype
#' @export
torch_short <- function() .dtype("int16")
#' @rdname torch_dtype
#' @export
torch_int8 <- function() .dtype("int8")
#' @rdname torch_dtype
#' @export
torch_uint8 <- function() .dtype("uint8")
#' @rdname torch_dtype
#' @export
torch_bool <- function() .dtype("bool")
#' @rdname torch_dtype
#' @export
torch_cfloat <- function() .dtype("complex64")
#' @rdname torch_dtype
#' @export
torch_cdouble <- function() .dtype("complex128")

.dtype_names <- c(
  float32 = "Float", float64 = "Double", float16 = "Half", bfloat16 = "BFloat16",
  int32 = "Int", int64 = "Long", int16 = "Short", int8 = "Char", uint8 = "Byte",
  bool = "Bool", complex64 = "ComplexFloat", complex128 = "ComplexDouble"
)

#' @export
as.character.torch.dtype <- function(x, ...) {
  nm <- sub("^torch\\.", "", reticulate::py_str(x))
  if (nm %in% names(.dtype_names)) .dtype_names[[nm]] else nm
}

#' @export
print.torch.dtype <- function(x, ...) {
  cat("torch_", as.character(x), "\n", sep = "")
  invisible(x)
}

.as_str <- function(x) if (is_py(x)) reticulate::py_str(x) else as.character(x)

#' @export
Ops.torch.dtype <- function(e1, e2) {
  if (!.Generic %in% c("==", "!=")) stop("only == and != are defined for dtypes", call. = FALSE)
  same <- is_py(e1) && is_py(e2) && identical(.as_str(e1), .as_str(e2))
  if (.Generic == "==") same else !same
}

#' Devices
#'
#' `torch_device("cpu")`, `torch_device("cuda", 0)` or `torch_device("cuda:1")`.
#'
#' @param type Device type (`"cpu"`, `"cuda"`, `"mps"`) or a full spec such as `"cuda:0"`.
#' @param index Optional device index (0-based, as in R torch).
#' @return A `torch.device` (Python object).
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   torch_device("cpu")
#' }
#' @export
torch_device <- function(type, index = NULL) {
  if (is.null(index)) py_module("torch")$device(type) else py_module("torch")$device(type, as.integer(index))
}

#' @export
Ops.torch.device <- function(e1, e2) {
  if (!.Generic %in% c("==", "!=")) stop("only == and != are defined for devices", call. = FALSE)
  same <- identical(.as_str(e1), .as_str(e2))
  if (.Generic == "==") same else !same
}

#' @export
as.character.torch.device <- function(x, ...) reticulate::py_str(x)

#' @export
print.torch_device <- function(x, ...) {
  index <- reticulate::py_to_r(reticulate::py_get_attr(x, "index"))
  type <- reticulate::py_to_r(reticulate::py_get_attr(x, "type"))
  cat("torch_device(type='", type, "'", if (!is.null(index)) paste0(", index=", index), ") \n", sep = "")
  invisible(x)
}

#' CUDA and MPS availability
#'
#' @return `TRUE`/`FALSE` (`cuda_device_count()`: a number).
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   cuda_is_available()
#' }
#' @export
cuda_is_available <- function() isTRUE(py_module("torch")$cuda$is_available())

#' @rdname cuda_is_available
#' @export
cuda_device_count <- function() as.numeric(py_module("torch")$cuda$device_count())

#' @rdname cuda_is_available
#' @export
backends_mps_is_available <- function() isTRUE(py_module("torch")$backends$mps$is_available())

#' Seed torch's random number generator
#'
#' The seed is sent as a double, so seeds above R's integer range work.
#' R's own generator (`set.seed()`) is separate.
#'
#' @param seed A number (or a string of digits).
#' @return `NULL`, invisibly.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   torch_manual_seed(1)
#'   torch_randn(2)
#' }
#' @export
torch_manual_seed <- function(seed) {
  if (!(is.numeric(seed) || is.character(seed)) || length(seed) != 1L || is.na(seed)) {
    stop("`seed` must be a single number.", call. = FALSE)
  }
  .pycall(.py("tensor", "manual_seed"), if (is.character(seed)) seed else as.double(seed))
  invisible(NULL)
}

#' Run code without (or with) gradient tracking
#'
#' @param code Code to evaluate.
#' @return The value of `code`.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   x <- torch_ones(2, requires_grad = TRUE)
#'   y <- with_no_grad(x * 2)
#'   y$requires_grad
#' }
#' @export
with_no_grad <- function(code) {
  prev <- .pycall(.py("tensor", "set_grad"), FALSE)
  on.exit(.pycall(.py("tensor", "set_grad"), prev), add = TRUE)
  force(code)
}

# Run `expr` when the frame `env` exits (what withr::defer does).
.defer <- function(expr, env) {
  thunk <- as.call(list(function() expr))
  do.call(base::on.exit, list(thunk, TRUE, FALSE), envir = env)
}

#' @rdname with_no_grad
#' @param .env The frame whose exit restores the previous mode (`local_*()`).
#' @export
local_no_grad <- function(.env = parent.frame()) {
  prev <- .pycall(.py("tensor", "set_grad"), FALSE)
  .defer(.pycall(.py("tensor", "set_grad"), prev), .env)
  invisible(prev)
}

#' @rdname with_no_grad
#' @export
local_enable_grad <- function(.env = parent.frame()) {
  prev <- .pycall(.py("tensor", "set_grad"), TRUE)
  .defer(.pycall(.py("tensor", "set_grad"), prev), .env)
  invisible(prev)
}

#' @rdname with_no_grad
#' @export
with_enable_grad <- function(code) {
  prev <- .pycall(.py("tensor", "set_grad"), TRUE)
  on.exit(.pycall(.py("tensor", "set_grad"), prev), add = TRUE)
  force(code)
}
