# Tensors: creation, conversion to R, `$` methods, operators.

# R data -> something reticulate sends to Python quickly: arrays (numpy)
# rather than bare vectors (Python lists).
.as_py_data <- function(x) {
  if (is_py(x)) return(x)
  if (is.list(x)) {
    if (length(x) && all(vapply(x, function(e) inherits(e, "torch.Tensor"), logical(1)))) return(unname(x))
    x <- unlist(x)
  }
  if (is.factor(x)) x <- as.integer(x)
  if (is.character(x)) stop("torch_tensor(): character data can't be converted to a tensor", call. = FALSE)
  if (is.null(dim(x))) x <- array(x)
  x
}

#' Create a tensor from R data
#'
#' R doubles become float32 tensors, R integers int64 and logicals bool (R
#' torch's rules). Matrices and arrays keep their `[i, j]` indexing.
#'
#' @param data An R vector, matrix or array (or a tensor, which is copied).
#' @param dtype Optional dtype, e.g. `torch_long()`.
#' @param device Optional device (`"cpu"`, `"cuda"`, a `torch_device()`).
#' @param requires_grad Whether autograd should record operations.
#' @param pin_memory Ignored (kept for R torch compatibility).
#' @return A tensor (a `torch.Tensor` Python object).
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   x <- torch_tensor(matrix(1:6, nrow = 2))
#'   x$dtype
#'   x[2, 3]
#' }
#' @export
torch_tensor <- function(data, dtype = NULL, device = NULL, requires_grad = FALSE, pin_memory = FALSE) {
  .pycall(.py("tensor", "from_r"), .as_py_data(data), dtype = dtype, device = device,
          requires_grad = isTRUE(requires_grad))
}

#' Is this a tensor?
#' @param x Any object.
#' @return `TRUE` or `FALSE`.
#' @examples
#' is_torch_tensor(1)
#' @export
is_torch_tensor <- function(x) inherits(x, "torch_tensor")

# ---------------------------------------------------------------------------
# creation
# ---------------------------------------------------------------------------

.size <- function(...) {
  s <- list(...)
  if (!is.null(s[["size"]])) s <- s[["size"]]
  s <- as.numeric(unlist(s))
  if (!length(s)) stop("a size is required, e.g. torch_zeros(2, 3)", call. = FALSE)
  if (length(s) == 1L) s else as.list(s)
}

.create <- function(kind, size = NULL, dtype = NULL, device = NULL, requires_grad = FALSE, ...) {
  .pycall(.py("tensor", "create"), kind, size = size, dtype = dtype, device = device,
          requires_grad = isTRUE(requires_grad), ...)
}

#' Create tensors
#'
#' Sizes can be given as separate numbers (`torch_zeros(2, 3)`) or as one
#' vector (`torch_zeros(c(2, 3))`).
#'
#' @param ... The size.
#' @param size Size vector (`torch_full()`, `torch_randint()`).
#' @param names Ignored (named tensors are not supported).
#' @param dtype,device,requires_grad,layout,memory_format Tensor options
#'   (`layout` and `memory_format` are ignored).
#' @param input A tensor whose shape (and by default dtype/device) is used.
#' @param fill_value The value to fill with.
#' @param low,high Range of `torch_randint()` (`high` exclusive).
#' @param generator Ignored.
#' @param n,m Sizes of `torch_eye()`, `n` of `torch_randperm()`.
#' @param start,end,steps,base,step Ranges; `torch_arange()`'s `end` is
#'   inclusive (R torch convention) and all-integer inputs give an int64 tensor.
#' @return A tensor.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   torch_zeros(2, 3)
#'   torch_randn(c(2, 2))
#'   torch_arange(1, 5)          # 1 2 3 4 5 (float)
#'   torch_arange(1L, 5L)        # int64
#'   torch_randint(1, 10, size = c(3))
#' }
#' @name torch_creation
NULL

#' @rdname torch_creation
#' @export
torch_zeros <- function(..., names = NULL, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE)
  .create("zeros", .size(...), dtype, device, requires_grad)
#' @rdname torch_creation
#' @export
torch_ones <- function(..., names = NULL, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE)
  .create("ones", .size(...), dtype, device, requires_grad)
#' @rdname torch_creation
#' @export
torch_empty <- function(..., names = NULL, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE)
  .create("empty", .size(...), dtype, device, requires_grad)
#' @rdname torch_creation
#' @export
torch_randn <- function(..., names = NULL, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE)
  .create("randn", .size(...), dtype, device, requires_grad)
#' @rdname torch_creation
#' @export
torch_rand <- function(..., names = NULL, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE)
  .create("rand", .size(...), dtype, device, requires_grad)
#' @rdname torch_creation
#' @export
torch_full <- function(size, fill_value, names = NULL, dtype = NULL, layout = NULL, device = NULL,
                       requires_grad = FALSE)
  .create("full", .size(size), dtype, device, requires_grad, fill_value = fill_value)
#' @rdname torch_creation
#' @export
torch_randint <- function(low, high, size, generator = NULL, dtype = NULL, layout = NULL, device = NULL,
                          requires_grad = FALSE, memory_format = NULL)
  .create("randint", .size(size), dtype, device, requires_grad, low = low, high = high)
#' @rdname torch_creation
#' @export
torch_randperm <- function(n, dtype = torch_int64(), layout = NULL, device = NULL, requires_grad = FALSE)
  .create("randperm", NULL, dtype, device, requires_grad, n = n)
#' @rdname torch_creation
#' @export
torch_eye <- function(n, m = n, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE)
  .create("eye", NULL, dtype, device, requires_grad, n = n, m = m)
#' @rdname torch_creation
#' @export
torch_linspace <- function(start, end, steps = 100, dtype = NULL, layout = NULL, device = NULL,
                           requires_grad = FALSE)
  .create("linspace", NULL, dtype, device, requires_grad, start = start, end = end, steps = steps)
#' @rdname torch_creation
#' @export
torch_logspace <- function(start, end, steps = 100, base = 10, dtype = NULL, layout = NULL, device = NULL,
                           requires_grad = FALSE)
  .create("logspace", NULL, dtype, device, requires_grad, start = start, end = end, steps = steps,
          base = as.double(base))
#' @rdname torch_creation
#' @export
torch_zeros_like <- function(input, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE,
                             memory_format = NULL)
  .create("zeros_like", NULL, dtype, device, requires_grad, input = input)
#' @rdname torch_creation
#' @export
torch_ones_like <- function(input, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE,
                            memory_format = NULL)
  .create("ones_like", NULL, dtype, device, requires_grad, input = input)
#' @rdname torch_creation
#' @export
torch_empty_like <- function(input, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE,
                             memory_format = NULL)
  .create("empty_like", NULL, dtype, device, requires_grad, input = input)
#' @rdname torch_creation
#' @export
torch_randn_like <- function(input, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE,
                             memory_format = NULL)
  .create("randn_like", NULL, dtype, device, requires_grad, input = input)
#' @rdname torch_creation
#' @export
torch_rand_like <- function(input, dtype = NULL, layout = NULL, device = NULL, requires_grad = FALSE,
                            memory_format = NULL)
  .create("rand_like", NULL, dtype, device, requires_grad, input = input)
#' @rdname torch_creation
#' @export
torch_full_like <- function(input, fill_value, dtype = NULL, layout = NULL, device = NULL,
                            requires_grad = FALSE, memory_format = NULL)
  .create("full_like", NULL, dtype, device, requires_grad, input = input, fill_value = fill_value)
#' @rdname torch_creation
#' @export
torch_randint_like <- function(input, low, high, dtype = NULL, layout = NULL, device = NULL,
                               requires_grad = FALSE)
  .create("randint_like", NULL, dtype, device, requires_grad, input = input, low = low, high = high)

#' @rdname torch_creation
#' @export
torch_arange <- function(start, end, step = 1, dtype = NULL, layout = NULL, device = NULL,
                         requires_grad = FALSE) {
  if (missing(end)) {
    end <- start
    start <- if (is.integer(end)) 1L else 1
  }
  integer <- is.integer(start) && is.integer(end) && (is.integer(step) || missing(step))
  .pycall(.py("tensor", "arange"), start, end, step, dtype = dtype, device = device,
          requires_grad = isTRUE(requires_grad), integer = integer)
}

# ---------------------------------------------------------------------------
# tensor -> R
# ---------------------------------------------------------------------------

#' Convert a tensor to an R array
#'
#' Floating tensors become doubles, int64 tensors R integers (a warning and
#' doubles when values exceed R's integer range), bool tensors logicals.
#' One-dimensional tensors become plain vectors.
#'
#' @param x A tensor.
#' @param ... Unused.
#' @return An R vector, matrix or array.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   as_array(torch_tensor(matrix(1:4, 2)))
#' }
#' @export
as_array <- function(x, ...) UseMethod("as_array")

#' @export
as_array.default <- function(x, ...) as.array(x, ...)

#' @export
as_array.torch_tensor <- function(x, ...) {
  r <- .pycall(.py("tensor", "to_r"), x)
  a <- r[[1]]
  if (isTRUE(r[[2]])) {
    warning("int64 values exceed R's integer range; returning doubles.", call. = FALSE)
  }
  if (length(dim(a)) <= 1L) a <- as.vector(a)
  a
}

#' @export
as.array.torch_tensor <- function(x, ...) {
  a <- as_array.torch_tensor(x)
  if (is.null(dim(a))) array(a) else a
}

#' @export
as.matrix.torch_tensor <- function(x, ...) as.matrix(as_array.torch_tensor(x))

#' @export
as.double.torch_tensor <- function(x, ...) as.double(as_array.torch_tensor(x))

#' @export
as.integer.torch_tensor <- function(x, ...) as.integer(as_array.torch_tensor(x))

#' @export
as.logical.torch_tensor <- function(x, ...) as.logical(as_array.torch_tensor(x))

#' @export
dim.torch_tensor <- function(x) {
  s <- .pycall(.py("tensor", "shape"), x)
  if (is.list(s)) as.integer(unlist(s)) else s
}

#' @export
length.torch_tensor <- function(x) {
  n <- .pycall(.py("ops", "method"), "numel", x)
  n
}

#' Print a tensor in R torch's layout
#'
#' The layout of R torch (libtorch's printer): one value per line for 1-d
#' tensors, a matrix for 2-d ones, `(i,j,.,.) =` slices (1-based) beyond,
#' then the type and shape, e.g. `[ CPUFloatType{2,3} ]`, and the autograd
#' state (`[ requires_grad = TRUE ]`, `[ grad_fn = <AddBackward0> ]`).
#' `str()` gives the one-line summary `Float [1:2, 1:3]`.
#'
#' @param x,object A tensor.
#' @param n Maximum number of lines printed (`-1`: no limit).
#' @param ... Unused.
#' @return `x`, invisibly.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   x <- torch_tensor(matrix(1:6, nrow = 2))
#'   print(x)
#'   str(x)
#' }
#' @export
print.torch_tensor <- function(x, n = 30, ...) {
  cat("torch_tensor\n")
  cat(.pycall(.py("print", "format_tensor"), x, n = as.integer(n)), "\n", sep = "")
  invisible(x)
}

#' @rdname print.torch_tensor
#' @importFrom utils str
#' @export
str.torch_tensor <- function(object, ...) {
  cat(.pycall(.py("print", "str_tensor"), object), "\n", sep = "")
  invisible()
}

# ---------------------------------------------------------------------------
# `$` on tensors: R torch conventions (1-based dims, 1-based returned indices,
# sizes as R vectors).  The kind of each attribute name is learned once.
# ---------------------------------------------------------------------------

.tensor_kinds <- new.env(parent = emptyenv())

.tensor_kind <- function(name) {
  k <- .tensor_kinds[[name]]
  if (is.null(k)) {
    k <- switch(name, shape = "shape", data = "data", .pycall(.py("ops", "is_method"), name))
    assign(name, k, envir = .tensor_kinds)
  }
  k
}

#' @export
`$.torch_tensor` <- function(x, name) {
  switch(
    .tensor_kind(name),
    method = function(...) .pycall(.py("ops", "method"), name, x, ...),
    shape = dim.torch_tensor(x),
    data = function() .pycall(.py("ops", "method"), "detach", x),   # R torch: x$data()
    property = {
      r <- reticulate::py_get_attr(x, name)
      if (inherits(r, "torch.Tensor")) r else reticulate::py_to_r(r)
    },
    {
      r <- reticulate::py_get_attr(x, name, silent = TRUE)
      if (is.null(r)) stop("tensor has no attribute or method '", name, "'", call. = FALSE)
      reticulate::py_to_r(r)
    }
  )
}

#' @export
`[[.torch_tensor` <- function(x, name) {
  if (is.character(name)) return(`$.torch_tensor`(x, name))
  stop("use `[` to index tensors", call. = FALSE)
}

#' @export
.DollarNames.torch_tensor <- function(x, pattern = "") {
  nms <- reticulate::py_to_r(reticulate::import_builtins()$dir(py_module("torch")$Tensor))
  nms <- c("shape", nms[!startsWith(nms, "_")])
  nms[grepl(pattern, nms)]
}

# ---------------------------------------------------------------------------
# operators and math functions
# ---------------------------------------------------------------------------

#' Operators and math functions for tensors
#'
#' Arithmetic (`+ - * / ^ %% %/%`), comparison (`== != < <= > >=`), logical
#' (`& | !`) operators and `Math` group functions (`abs`, `exp`, `log`,
#' `sqrt`, `floor`, `round`, ...) work on tensors, with R numbers or vectors
#' on either side (R doubles act as float scalars, as in R torch).
#'
#' @param e1,e2,x Tensors or R values.
#' @param ... Extra arguments (`log(x, base)`, `round(x, digits)`).
#' @return A tensor.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   x <- torch_tensor(c(1, 2, 3))
#'   x * 2 + 1
#'   1 / x
#'   x > 1.5
#'   sqrt(x)
#' }
#' @name tensor_ops
NULL

#' @rdname tensor_ops
#' @export
Ops.torch_tensor <- function(e1, e2) {
  if (missing(e2)) return(.pycall(.py("ops", "unop"), .Generic, e1))
  if (!is_py(e1)) e1 <- .as_operand(e1)
  if (!is_py(e2)) e2 <- .as_operand(e2)
  .pycall(.py("ops", "binop"), .Generic, e1, e2)
}

.as_operand <- function(x) {
  if (length(x) == 1L && is.null(dim(x)) && is.atomic(x)) return(x)
  .as_py_data(x)
}

#' @rdname tensor_ops
#' @export
Math.torch_tensor <- function(x, ...) .pycall(.py("ops", "mathop"), .Generic, x, ...)


#' Is a usable torch available?
#'
#' R torch's guard for examples (`if (torch_is_installed()) ...`): here, whether
#' the engine (and with it Python's torch) loads in the Python reticulate uses. It loads
#' the engine the package's way, so torch keeps its own BLAS afterwards.
#' @return `TRUE` or `FALSE`.
#' @examples
#' torch_is_installed()
#' @export
torch_is_installed <- function() pyluz_engine_available()

#' Save and load tensors, modules and lists of them
#'
#' `torch_save()` writes one file with `torch.save`; `torch_load()` reads it
#' back (with `weights_only` unpickling: tensors, modules' state, lists).
#' A module is saved as its state dict: load it into a new instance with
#' `model$load_state_dict(torch_load(path))`.
#' @param obj A tensor, a module, or a (named) list of tensors.
#' @param path File path.
#' @param ... Unused.
#' @param device Optional device to load tensors onto.
#' @return `torch_save()`: `path`, invisibly; `torch_load()`: what was saved.
#' @examples
#' if (torch_is_installed()) {
#'   f <- tempfile()
#'   torch_save(list(a = torch_ones(2)), f)
#'   torch_load(f)$a
#' }
#' @export
torch_save <- function(obj, path, ...) {
  if (inherits(obj, "nn_module")) obj <- obj$state_dict()
  .pycall(.py("tensor", "save"), obj, path.expand(path))
  invisible(path)
}

#' @rdname torch_save
#' @export
torch_load <- function(path, device = NULL) {
  .pycall(.py("tensor", "load"), path.expand(path), device = if (is.null(device)) NULL else as.character(device))
}
