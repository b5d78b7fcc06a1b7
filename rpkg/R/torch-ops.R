# Tensor operations with R torch conventions.
#
# Every op is one line: `.op("<torch function>", ...)` calls
# `pyluz.interop.torch_ops.op()`, which translates 1-based `dim`-like arguments,
# 1-based index arguments and size arguments from the table `torch_ops.SPECS`
# (add an entry there when a new op takes dims/indices), and adds 1 to
# returned indices (argmax, max(dim), sort, topk, ...).

.op <- function(name, ...) .pycall(.py("ops", "op"), name, ...)

#' Tensor operations (R torch conventions)
#'
#' Thin wrappers over PyTorch functions with R torch's conventions:
#' dimensions are 1-based (negative values count from the end, `0` is an
#' error), returned indices are 1-based (`torch_argmax()`, `torch_max(x, dim)`
#' (a list of values and indices), `torch_sort()`, `torch_topk()`,
#' `torch_where(condition)`), sizes are R numbers. Extra arguments are passed
#' on with PyTorch's names (`keepdim`, `dtype`, `descending`, ...).
#'
#' @param self A tensor (R numbers are converted).
#' @param tensors A list of tensors.
#' @param dim,dim0,dim1,start_dim,end_dim,dims 1-based dimension(s).
#' @param keepdim Keep reduced dimensions.
#' @param other,mat2,vec2,end,weight,condition,min,max,exponent Other operands, as in PyTorch.
#' @param shape New shape (sizes are not shifted; `-1` infers one size).
#' @param p Norm order.
#' @param dtype Result dtype.
#' @param rtol,atol,equal_nan Tolerances of `torch_allclose()`.
#' @param descending,stable Sort options.
#' @param k,largest,sorted `torch_topk()` options.
#' @param diagonal Diagonal offset.
#' @param chunks,split_size Number of chunks / chunk size.
#' @param index 1-based index tensor (`torch_gather()`, `torch_index_select()`).
#' @param sparse_grad Sparse gradient for `torch_gather()`.
#' @param equation Einstein summation equation.
#' @param num_samples,replacement `torch_multinomial()` options (returns 1-based indices).
#' @param ... Further arguments of the PyTorch function.
#' @return A tensor, or a list of tensors for ops with several results.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   m <- matrix(c(1, 5, 3, 2, 4, 6), nrow = 2)
#'   x <- torch_tensor(m)
#'   torch_sum(x, dim = 1)         # column sums, like colSums(m)
#'   torch_argmax(x, dim = 2)      # 1-based, like apply(m, 1, which.max)
#'   torch_max(x, dim = 2)         # list(values, indices)
#'   torch_flatten(torch_ones(2, 3, 4), start_dim = 2)$shape
#' }
#' @name torch_ops
NULL

#' @rdname torch_ops
#' @export
torch_flatten <- function(self, start_dim = 1, end_dim = -1) .op("flatten", self, start_dim, end_dim)
#' @rdname torch_ops
#' @export
torch_argmax <- function(self, dim = NULL, keepdim = FALSE) .op("argmax", self, dim = dim, keepdim = keepdim)
#' @rdname torch_ops
#' @export
torch_argmin <- function(self, dim = NULL, keepdim = FALSE) .op("argmin", self, dim = dim, keepdim = keepdim)
#' @rdname torch_ops
#' @export
torch_max <- function(self, ...) .op("max", self, ...)
#' @rdname torch_ops
#' @export
torch_min <- function(self, ...) .op("min", self, ...)
#' @rdname torch_ops
#' @export
torch_amax <- function(self, dim = c(), keepdim = FALSE) .op("amax", self, as.list(dim), keepdim)
#' @rdname torch_ops
#' @export
torch_amin <- function(self, dim = c(), keepdim = FALSE) .op("amin", self, as.list(dim), keepdim)
#' @rdname torch_ops
#' @export
torch_mean <- function(self, ...) .op("mean", self, ...)
#' @rdname torch_ops
#' @export
torch_sum <- function(self, ...) .op("sum", self, ...)
#' @rdname torch_ops
#' @export
torch_prod <- function(self, ...) .op("prod", self, ...)
#' @rdname torch_ops
#' @export
torch_std <- function(self, ...) .op("std", self, ...)
#' @rdname torch_ops
#' @export
torch_var <- function(self, ...) .op("var", self, ...)
#' @rdname torch_ops
#' @export
torch_median <- function(self, ...) .op("median", self, ...)
#' @rdname torch_ops
#' @export
torch_logsumexp <- function(self, dim, keepdim = FALSE) .op("logsumexp", self, dim, keepdim)
#' @rdname torch_ops
#' @export
torch_cumsum <- function(self, dim, ...) .op("cumsum", self, dim, ...)
#' @rdname torch_ops
#' @export
torch_cumprod <- function(self, dim, ...) .op("cumprod", self, dim, ...)
#' @rdname torch_ops
#' @export
torch_norm <- function(self, p = 2, dim = NULL, keepdim = FALSE, dtype = NULL)
  .op("norm", self, p, dim = dim, keepdim = keepdim, dtype = dtype)
#' @rdname torch_ops
#' @export
torch_cat <- function(tensors, dim = 1) .op("cat", unname(tensors), dim)
#' @rdname torch_ops
#' @export
torch_stack <- function(tensors, dim = 1) .op("stack", unname(tensors), dim)
#' @rdname torch_ops
#' @export
torch_matmul <- function(self, other) .op("matmul", self, other)
#' @rdname torch_ops
#' @export
torch_mm <- function(self, mat2) .op("mm", self, mat2)
#' @rdname torch_ops
#' @export
torch_bmm <- function(self, mat2) .op("bmm", self, mat2)
#' @rdname torch_ops
#' @export
torch_squeeze <- function(self, dim = NULL) if (is.null(dim)) .op("squeeze", self) else .op("squeeze", self, dim)
#' @rdname torch_ops
#' @export
torch_unsqueeze <- function(self, dim) .op("unsqueeze", self, dim)
#' @rdname torch_ops
#' @export
torch_transpose <- function(self, dim0, dim1) .op("transpose", self, dim0, dim1)
#' @rdname torch_ops
#' @export
torch_t <- function(self) .op("t", self)
#' @rdname torch_ops
#' @export
torch_permute <- function(self, dims) .op("permute", self, as.list(dims))
#' @rdname torch_ops
#' @export
torch_reshape <- function(self, shape) .op("reshape", self, as.list(shape))
#' @rdname torch_ops
#' @export
torch_allclose <- function(self, other, rtol = 1e-05, atol = 1e-08, equal_nan = FALSE)
  .op("allclose", self, other, rtol = rtol, atol = atol, equal_nan = equal_nan)
#' @rdname torch_ops
#' @export
torch_equal <- function(self, other) .op("equal", self, other)
#' @rdname torch_ops
#' @export
torch_sigmoid <- function(self) .op("sigmoid", self)
#' @rdname torch_ops
#' @export
torch_exp <- function(self) .op("exp", self)
#' @rdname torch_ops
#' @export
torch_log <- function(self) .op("log", self)
#' @rdname torch_ops
#' @export
torch_log1p <- function(self) .op("log1p", self)
#' @rdname torch_ops
#' @export
torch_abs <- function(self) .op("abs", self)
#' @rdname torch_ops
#' @export
torch_sqrt <- function(self) .op("sqrt", self)
#' @rdname torch_ops
#' @export
torch_square <- function(self) .op("square", self)
#' @rdname torch_ops
#' @export
torch_pow <- function(self, exponent) .op("pow", self, exponent)
#' @rdname torch_ops
#' @export
torch_tanh <- function(self) .op("tanh", self)
#' @rdname torch_ops
#' @export
torch_relu <- function(self) .op("relu", self)
#' @rdname torch_ops
#' @export
torch_sign <- function(self) .op("sign", self)
#' @rdname torch_ops
#' @export
torch_round <- function(self, ...) .op("round", self, ...)
#' @rdname torch_ops
#' @export
torch_floor <- function(self) .op("floor", self)
#' @rdname torch_ops
#' @export
torch_ceil <- function(self) .op("ceil", self)
#' @rdname torch_ops
#' @export
torch_softmax <- function(self, dim, dtype = NULL) .op("softmax", self, dim, dtype = dtype)
#' @rdname torch_ops
#' @export
torch_log_softmax <- function(self, dim, dtype = NULL) .op("log_softmax", self, dim, dtype = dtype)
#' @rdname torch_ops
#' @export
torch_sort <- function(self, dim = -1, descending = FALSE, stable = FALSE)
  .op("sort", self, dim = dim, descending = descending, stable = stable)
#' @rdname torch_ops
#' @export
torch_argsort <- function(self, dim = -1, descending = FALSE) .op("argsort", self, dim = dim, descending = descending)
#' @rdname torch_ops
#' @export
torch_topk <- function(self, k, dim = -1, largest = TRUE, sorted = TRUE)
  .op("topk", self, k, dim = dim, largest = largest, sorted = sorted)
#' @rdname torch_ops
#' @export
torch_where <- function(condition, self = NULL, other = NULL) {
  if (is.null(self) && is.null(other)) .op("where", condition) else .op("where", condition, self, other)
}
#' @rdname torch_ops
#' @export
torch_clamp <- function(self, min = NULL, max = NULL) .op("clamp", self, min = min, max = max)
#' @rdname torch_ops
#' @export
torch_clip <- torch_clamp
#' @rdname torch_ops
#' @export
torch_lerp <- function(self, end, weight) .op("lerp", self, end, weight)
#' @rdname torch_ops
#' @export
torch_maximum <- function(self, other) .op("maximum", self, other)
#' @rdname torch_ops
#' @export
torch_minimum <- function(self, other) .op("minimum", self, other)
#' @rdname torch_ops
#' @export
torch_isnan <- function(self) .op("isnan", self)
#' @rdname torch_ops
#' @export
torch_diag <- function(self, diagonal = 0) .op("diag", self, diagonal)
#' @rdname torch_ops
#' @export
torch_chunk <- function(self, chunks, dim = 1) .op("chunk", self, chunks, dim)
#' @rdname torch_ops
#' @export
torch_split <- function(self, split_size, dim = 1) .op("split", self, split_size, dim)
#' @rdname torch_ops
#' @export
torch_gather <- function(self, dim, index, sparse_grad = FALSE) .op("gather", self, dim, index, sparse_grad = sparse_grad)
#' @rdname torch_ops
#' @export
torch_index_select <- function(self, dim, index) .op("index_select", self, dim, index)
#' @rdname torch_ops
#' @export
torch_einsum <- function(equation, tensors) .pycall_list(.py("torch", "einsum"), c(list(equation), unname(tensors)))
#' @rdname torch_ops
#' @export
torch_multinomial <- function(self, num_samples, replacement = FALSE)
  .op("multinomial", self, num_samples, replacement = replacement)
#' @rdname torch_ops
#' @export
torch_nonzero <- function(self) .op("nonzero", self)
#' @rdname torch_ops
#' @export
torch_outer <- function(self, vec2) .op("outer", self, vec2)
#' @rdname torch_ops
#' @export
torch_tril <- function(self, diagonal = 0) .op("tril", self, diagonal)
#' @rdname torch_ops
#' @export
torch_triu <- function(self, diagonal = 0) .op("triu", self, diagonal)
