# `[` and `[<-` for tensors with R torch semantics:
#   * 1-based; `x[-1]` is the last element (negative = from the end);
#   * `a:b` is an inclusive range (`a:b:s` with step s); `N` is the size of
#     the indexed dimension (`x[2:N]`); `..` fills the remaining dimensions;
#   * a missing index takes the whole dimension; fewer indices than dims
#     leave the trailing dims whole;
#   * scalar indices drop their dimension unless `drop = FALSE`;
#   * integer vectors select a sub-grid (`x[c(1, 3), c(2, 4)]` is 2 x 2, as
#     for R matrices); logical vectors and boolean tensors are masks;
#     integer tensors are 1-based indices; `NULL`/`newaxis` adds a dim.
# The unevaluated arguments are turned into tokens here and interpreted by
# `pyluz.interop.torch_indexing.getitem()` / `setitem()`.

#' Indexing tensors
#'
#' @param x A tensor.
#' @param ... Indices, one per dimension (see Details).
#' @param drop Drop dimensions indexed by a single number (default `TRUE`).
#' @param value Value to assign (a tensor or R number/vector/array).
#' @details
#' `x[i, j]` follows R torch: indices are 1-based, `a:b` ranges include both
#' ends, negative indices count from the end (`x[-1]` is the last element),
#' `N` stands for the size of the dimension (`x[2:N]`), `..` stands for all
#' remaining dimensions (`x[.., 1]`), a missing index selects everything,
#' vectors select sub-grids like R matrix indexing, logical vectors and
#' boolean tensors select by mask, and `newaxis` (or `NULL`) inserts a
#' dimension of size one.
#' @return A tensor (`[<-` modifies `x` in place and returns it).
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   m <- matrix(1:12, nrow = 3)
#'   x <- torch_tensor(m)
#'   x[2, ]                 # like m[2, ]
#'   x[1:2, c(1, 4)]        # like m[1:2, c(1, 4)]
#'   x[-1, ]                # last row
#'   x[.., 1]               # first column
#'   x[x > 6]               # mask
#'   x[1, 1] <- 100L
#' }
#' @name tensor_indexing
NULL

#' @rdname tensor_indexing
#' @export
newaxis <- NULL

#' Slice object
#'
#' `slc(start, end, step)` builds a slice programmatically (inclusive `end`);
#' `x[slc(2, 4)]` is `x[2:4]`.
#'
#' @param start,end First and last (inclusive) indices, 1-based; `end` may be
#'   negative (from the end) or `Inf` for "to the end".
#' @param step Step (positive).
#' @return A slice object usable inside `[`.
#' @examples
#' s <- slc(2, 10, 2)
#' @export
slc <- function(start = 1, end = Inf, step = 1) {
  structure(list(start = start, end = end, step = step), class = "rtorch_slice")
}

.is_empty_arg <- function(e) is.symbol(e) && identical(as.character(e), "")

.range_parts <- function(e) {
  # a:b or (a:b):s
  if (is.call(e) && identical(e[[1]], as.name(":"))) {
    lhs <- e[[2]]
    if (is.call(lhs) && identical(lhs[[1]], as.name(":"))) {
      return(list(lhs[[2]], lhs[[3]], e[[3]]))
    }
    return(list(e[[2]], e[[3]], NULL))
  }
  NULL
}

.slice_token <- function(start, end, step) {
  if (is.infinite(end)) end <- NULL
  list("slice", start, end, step)
}

.index_tokens <- function(x, exprs, env) {
  n <- length(exprs)
  ell <- which(vapply(exprs, function(e) identical(e, quote(..)), logical(1)))
  shape <- NULL
  size_of <- function(pos) {
    if (is.null(shape)) shape <<- dim.torch_tensor(x)
    d <- if (length(ell) && pos > ell[1]) length(shape) - (n - pos) else pos
    shape[[d]]
  }
  toks <- vector("list", n)
  for (i in seq_len(n)) {
    if (.is_empty_arg(exprs[[i]])) {
      toks[[i]] <- list("full")
      next
    }
    e <- exprs[[i]]
    if (identical(e, quote(..))) {
      toks[[i]] <- list("ell")
      next
    }
    ev <- env
    if ("N" %in% all.names(e)) {
      ev <- new.env(parent = env)
      ev$N <- size_of(i)
    }
    rp <- .range_parts(e)
    if (!is.null(rp)) {
      a <- eval(rp[[1]], ev)
      b <- eval(rp[[2]], ev)
      s <- if (is.null(rp[[3]])) 1 else eval(rp[[3]], ev)
      if (length(a) == 1L && length(b) == 1L && !(sign(a) == sign(b) && a > b)) {
        toks[[i]] <- .slice_token(a, b, s)
        next
      }
      v <- eval(e, ev)
    } else {
      v <- eval(e, ev)
    }
    toks[[i]] <- .value_token(v)
  }
  toks
}

.value_token <- function(v) {
  if (is.null(v)) return(list("new"))
  if (inherits(v, "rtorch_slice")) return(.slice_token(v$start, v$end, v$step))
  if (inherits(v, "torch.Tensor")) return(list("tensor", v))
  if (is.logical(v)) return(list("bool", if (length(v) == 1L) list(v) else array(v)))
  if (is.numeric(v)) {
    if (length(v) == 1L && is.null(dim(v))) return(list("int", v))
    return(list("vec", as.list(as.numeric(v))))
  }
  stop("unsupported index of class ", paste(class(v), collapse = "/"), call. = FALSE)
}

#' @rdname tensor_indexing
#' @export
`[.torch_tensor` <- function(x, ..., drop = TRUE) {
  exprs <- as.list(substitute(list(...)))[-1L]
  toks <- .index_tokens(x, exprs, parent.frame())
  .pycall(.py("indexing", "getitem"), x, toks, isTRUE(drop))
}

#' @rdname tensor_indexing
#' @export
`[<-.torch_tensor` <- function(x, ..., value) {
  exprs <- as.list(substitute(list(...)))[-1L]
  toks <- .index_tokens(x, exprs, parent.frame())
  if (!is_py(value)) value <- if (length(value) == 1L && is.null(dim(value))) value else .as_py_data(value)
  .pycall(.py("indexing", "setitem"), x, toks, value)
  x
}
