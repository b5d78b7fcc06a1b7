# Functional interface (nnf_*), R torch conventions.
#
# One line per function: `.nnf("<torch.nn.functional name>")` passes the
# first argument positionally and the others by name to
# `pyluz.interop.torch_nnf.nnf()`, which makes sizes ints, shifts 1-based `dim`s
# and 1-based class targets.

# Loss functions carry the torch.nn.functional name: passed to Python (e.g.
# `setup(loss = nnf_cross_entropy)`), reticulate converts them with r_to_py()
# into the pure-Python `pyluz.interop.torch_nnf.Functional(name)`, so the engine
# computes the loss without calling back into R.
.nnf_loss <- function(py_name, fn) {
  structure(fn, py_name = py_name, class = c("rtorch_nnf", "function"))
}

#' @export
r_to_py.rtorch_nnf <- function(x, convert = FALSE) {
  .pycall(.py("nnf", "Functional"), attr(x, "py_name"))
}

#' @export
print.rtorch_nnf <- function(x, ...) {
  print(unclass(`attributes<-`(x, NULL)))
  invisible(x)
}

.nnf_call <- function(name, input, ...) .pycall(.py("nnf", "nnf"), name, input, ...)

.nnf <- function(name, env = parent.frame()) {
  fn <- sys.function(-1)
  args <- .args_with_defaults(env, formals(fn))
  .pycall_list(.py("nnf", "nnf"), c(list(name), unname(args[1L])), args[-1L])
}

#' Functional neural network operations
#'
#' `nnf_*` functions with R torch's signatures. `dim` arguments are 1-based;
#' class targets of `nnf_cross_entropy()`, `nnf_nll_loss()` and
#' `nnf_one_hot()` are 1-based (1..C).
#'
#' @param input,tensor,x1,x2 Input tensors.
#' @param target Targets (1-based classes for the classification losses).
#' @param inplace,training,p Activation/dropout options.
#' @param dim,dtype Softmax dimension (1-based) and dtype.
#' @param kernel_size,stride,padding,dilation,ceil_mode,return_indices,count_include_pad,divisor_override,output_size
#'   Pooling arguments.
#' @param weight,ignore_index,reduction,label_smoothing,pos_weight Loss arguments.
#' @param num_classes Number of classes of `nnf_one_hot()` (-1: infer).
#' @param approximate GELU approximation (`"none"` or `"tanh"`).
#' @param pad,mode,value Padding sizes (last dim first), mode and fill value.
#' @param negative_slope,alpha,beta,threshold Activation parameters.
#' @param eps,margin,swap Other loss/normalization arguments.
#' @param anchor,positive,negative Triplet loss inputs.
#' @param bias Bias of `nnf_linear()`.
#' @return A tensor.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   x <- torch_randn(2, 3)
#'   nnf_relu(x)
#'   nnf_softmax(x, dim = 2)
#'   nnf_cross_entropy(x, torch_tensor(c(1L, 3L)))
#'   nnf_one_hot(torch_tensor(c(1L, 2L, 3L)))
#' }
#' @name nnf
NULL

#' @rdname nnf
#' @export
nnf_relu <- function(input, inplace = FALSE) .nnf_call("relu", input, inplace = inplace)
#' @rdname nnf
#' @export
nnf_leaky_relu <- function(input, negative_slope = 0.01, inplace = FALSE) .nnf("leaky_relu")
#' @rdname nnf
#' @export
nnf_elu <- function(input, alpha = 1, inplace = FALSE) .nnf("elu")
#' @rdname nnf
#' @export
nnf_gelu <- function(input, approximate = "none") .nnf_call("gelu", input, approximate = approximate)
#' @rdname nnf
#' @export
nnf_silu <- function(input, inplace = FALSE) .nnf("silu")
#' @rdname nnf
#' @export
nnf_softplus <- function(input, beta = 1, threshold = 20) .nnf("softplus")
#' @rdname nnf
#' @export
nnf_sigmoid <- function(input) .nnf_call("sigmoid", input)
#' @rdname nnf
#' @export
nnf_tanh <- function(input) .nnf_call("tanh", input)
#' @rdname nnf
#' @export
nnf_softmax <- function(input, dim, dtype = NULL) .nnf_call("softmax", input, dim = dim, dtype = dtype)
#' @rdname nnf
#' @export
nnf_log_softmax <- function(input, dim, dtype = NULL) .nnf_call("log_softmax", input, dim = dim, dtype = dtype)
#' @rdname nnf
#' @export
nnf_dropout <- function(input, p = 0.5, training = TRUE, inplace = FALSE)
  .nnf_call("dropout", input, p = p, training = training, inplace = inplace)
#' @rdname nnf
#' @export
nnf_dropout2d <- function(input, p = 0.5, training = TRUE, inplace = FALSE) .nnf("dropout2d")
#' @rdname nnf
#' @export
nnf_max_pool1d <- function(input, kernel_size, stride = NULL, padding = 0, dilation = 1,
                           ceil_mode = FALSE, return_indices = FALSE) .nnf("max_pool1d")
#' @rdname nnf
#' @export
nnf_max_pool2d <- function(input, kernel_size, stride = NULL, padding = 0, dilation = 1,
                           ceil_mode = FALSE, return_indices = FALSE) .nnf("max_pool2d")
#' @rdname nnf
#' @export
nnf_avg_pool2d <- function(input, kernel_size, stride = NULL, padding = 0, ceil_mode = FALSE,
                           count_include_pad = TRUE, divisor_override = NULL) .nnf("avg_pool2d")
#' @rdname nnf
#' @export
nnf_adaptive_avg_pool2d <- function(input, output_size) .nnf("adaptive_avg_pool2d")
#' @rdname nnf
#' @export
nnf_adaptive_max_pool2d <- function(input, output_size, return_indices = FALSE) .nnf("adaptive_max_pool2d")
#' @rdname nnf
#' @export
nnf_adaptive_max_pool1d <- function(input, output_size, return_indices = FALSE) .nnf("adaptive_max_pool1d")
#' @rdname nnf
#' @export
nnf_linear <- function(input, weight, bias = NULL) .nnf("linear")
#' @rdname nnf
#' @export
nnf_normalize <- function(input, p = 2, dim = 2, eps = 1e-12) .nnf("normalize")
#' @rdname nnf
#' @export
nnf_cosine_similarity <- function(x1, x2, dim = 2, eps = 1e-08) {
  .pycall(.py("nnf", "nnf"), "cosine_similarity", x1, x2 = x2, dim = dim, eps = eps)
}
#' @rdname nnf
#' @export
nnf_pad <- function(input, pad, mode = "constant", value = NULL) .nnf("pad")
#' @rdname nnf
#' @export
nnf_one_hot <- function(tensor, num_classes = -1) .nnf("one_hot")
#' @rdname nnf
#' @export
nnf_cross_entropy <- .nnf_loss("cross_entropy", function(input, target, weight = NULL, ignore_index = -100, reduction = "mean",
                              label_smoothing = 0) .nnf("cross_entropy"))
#' @rdname nnf
#' @export
nnf_nll_loss <- .nnf_loss("nll_loss", function(input, target, weight = NULL, ignore_index = -100, reduction = "mean")
  .nnf("nll_loss"))
#' @rdname nnf
#' @export
nnf_mse_loss <- .nnf_loss("mse_loss", function(input, target, reduction = "mean") .nnf("mse_loss"))
#' @rdname nnf
#' @export
nnf_l1_loss <- .nnf_loss("l1_loss", function(input, target, reduction = "mean") .nnf("l1_loss"))
#' @rdname nnf
#' @export
nnf_smooth_l1_loss <- .nnf_loss("smooth_l1_loss", function(input, target, reduction = "mean", beta = 1) .nnf("smooth_l1_loss"))
#' @rdname nnf
#' @export
nnf_binary_cross_entropy <- .nnf_loss("binary_cross_entropy", function(input, target, weight = NULL, reduction = "mean")
  .nnf("binary_cross_entropy"))
#' @rdname nnf
#' @export
nnf_binary_cross_entropy_with_logits <- .nnf_loss("binary_cross_entropy_with_logits", function(input, target, weight = NULL, reduction = "mean",
                                                 pos_weight = NULL) .nnf("binary_cross_entropy_with_logits"))
#' @rdname nnf
#' @export
nnf_triplet_margin_loss <- .nnf_loss("triplet_margin_loss", function(anchor, positive, negative, margin = 1, p = 2, eps = 1e-06,
                                    swap = FALSE, reduction = "mean") .nnf("triplet_margin_loss"))
