# Neural network modules: nn_module() and the built-in layers.

#' Define a neural network module
#'
#' `nn_module()` returns a generator; calling it (`Net(...)`) creates an
#' instance that **is a Python `torch.nn.Module`**: its methods are the R
#' functions given here, evaluated with `self`, `private`, `super` (and
#' luz's `ctx`) available as in R torch / R6.
#'
#' * `initialize(...)` builds the module; `self$fc <- nn_linear(4, 2)`
#'   registers a submodule, `self$w <- nn_parameter(x)` a parameter and
#'   `self$b <- nn_buffer(x)` a buffer; other values are stored on the R side.
#' * `forward(...)` is called when the module is called (`model(x)`), from R
#'   or from Python.
#' * any other method (`loss`, `step`, `set_optimizers`, `predict`, ...) is
#'   callable from R (`model$loss(...)`) and from Python (`model.loss(...)`).
#' * `model$parameters` is a named list of parameters; `model$train()`,
#'   `model$eval()`, `model$training`, `model$state_dict()`,
#'   `model$load_state_dict()`, `model$to(device = )`, `model$zero_grad()`
#'   come from PyTorch.
#'
#' @param classname Name of the class (also the Python class name).
#' @param inherit Another `nn_module()` generator, a Python `nn.Module`
#'   subclass, or a layer constructor such as `nn_linear`.
#' @param ... Named methods and fields (`initialize`, `forward`, ...).
#' @param private,active Named lists of private members and active bindings.
#' @param parent_env Environment the methods' enclosures inherit from.
#' @return A generator (function) of class `nn_module_generator`.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   Net <- nn_module(
#'     "Net",
#'     initialize = function(n_in, n_out) {
#'       self$fc <- nn_linear(n_in, n_out)
#'     },
#'     forward = function(x) {
#'       torch_relu(self$fc(x))
#'     }
#'   )
#'   model <- Net(4, 2)
#'   model(torch_randn(3, 4))
#'   length(model$parameters)
#' }
#' @export
nn_module <- function(classname = NULL, inherit = NULL, ..., private = NULL, active = NULL,
                      parent_env = parent.frame()) {
  .new_generator("module", classname, inherit, list(...), private, active, parent_env,
                 "nn_module_generator")
}

#' @export
print.rtorch_generator <- function(x, ...) {
  def <- attr(x, "def")
  cat("<", class(x)[1], "> ", def$classname, "\n", sep = "")
  invisible(x)
}

#' @export
r_to_py.rtorch_generator <- function(x, convert = FALSE) {
  .rclass_pyclass(attr(x, "def"))
}

#' Parameters and buffers
#'
#' `nn_parameter(x)` marks a tensor as a parameter (registered when assigned
#' to `self$name`); `nn_buffer(x)` marks it as a buffer (saved in the state
#' dict and moved with the module, not trained).
#'
#' @param x A tensor.
#' @param requires_grad Whether the parameter is trained.
#' @param persistent Whether the buffer is part of the state dict.
#' @return A parameter (`torch.nn.Parameter`) or an `nn_buffer` marker.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   p <- nn_parameter(torch_randn(3))
#'   p$requires_grad
#' }
#' @export
nn_parameter <- function(x, requires_grad = TRUE) {
  py_module("torch")$nn$Parameter(x, requires_grad = isTRUE(requires_grad))
}

#' @rdname nn_parameter
#' @export
nn_buffer <- function(x, persistent = TRUE) {
  structure(list(tensor = x, persistent = persistent), class = "nn_buffer")
}

# ---------------------------------------------------------------------------
# R torch conventions for every nn.Module (Python-defined or R-defined)
# ---------------------------------------------------------------------------

.module_named <- function(x, what) .pycall(.py("nn", "named_members"), x, what)

#' @export
`$.torch.nn.modules.module.Module` <- function(x, name) {
  switch(
    name,
    parameters = .module_named(x, "parameters"),
    buffers = .module_named(x, "buffers"),
    children = .module_named(x, "children"),
    modules = .module_named(x, "modules"),
    named_parameters = function(...) .module_named(x, "parameters"),
    device = {
      if (reticulate::py_has_attr(x, "device")) return(NextMethod())
      .pycall(.py("nn", "module_device"), x)
    },
    named_buffers = function(...) .module_named(x, "buffers"),
    apply = {
      f <- NextMethod()
      # model$apply(init_weights): R errors inside come back as themselves
      function(fn) invisible(with_r_errors(f(r_callable(fn))))
    },
    train = , eval = , to = , cuda = , cpu = , zero_grad = , load_state_dict = ,
    requires_grad_ = , register_buffer = , register_parameter = , add_module = , float = ,
    double = , half = , share_memory = {
      f <- NextMethod()
      function(...) invisible(f(...))
    },
    clone = function(deep = TRUE) {
      copy <- py_module("copy")
      if (isTRUE(deep)) copy$deepcopy(x) else copy$copy(x)
    },
    .classes = .r_classes(x),
    {
      # R6 semantics (R torch): a field that isn't there is NULL, not an error
      if (!reticulate::py_has_attr(x, name)) return(NULL)
      NextMethod()
    }
  )
}

# R torch's part of a class vector (Python class names always hold a dot).
.r_classes <- function(x) {
  cl <- class(x)
  cl[!grepl(".", cl, fixed = TRUE)]
}

#' Is this a module?
#' @param x Any object.
#' @return `TRUE` or `FALSE`.
#' @examples
#' if (reticulate::py_module_available("torch")) is_nn_module(nn_relu())
#' @export
is_nn_module <- function(x) inherits(x, "nn_module")

#' Print a module in R torch's layout
#'
#' The parameter count, then the direct submodules (`<class> #n parameters`),
#' parameters and buffers (`Float [1:5, 1:10]`), as R torch prints them.
#'
#' @param x A module.
#' @param ... Unused.
#' @return `x`, invisibly.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   print(nn_sequential(nn_linear(4, 8), nn_relu(), nn_linear(8, 1)))
#' }
#' @export
print.nn_module <- function(x, ...) {
  info <- .pycall(.py("nn", "summary"), x)
  cat("An `nn_module` containing ", .comma(info$n), " parameters.\n", sep = "")
  children <- .module_named(x, "children")
  if (length(children)) {
    cat("\n")
    cli::cat_rule("Modules")
    for (nm in names(children)) {
      cli::cat_bullet(paste0(nm, ": <", class(children[[nm]])[1], "> #",
                             .comma(info$children[[nm]]), " parameters"))
    }
  }
  for (what in c("parameters", "buffers")) {
    items <- info[[what]]
    if (length(items)) {
      cat("\n")
      cli::cat_rule(if (what == "parameters") "Parameters" else "Buffers")
      for (nm in names(items)) cli::cat_bullet(paste0(nm, ": ", items[[nm]]))
    }
  }
  invisible(x)
}

.comma <- function(n) format(n, big.mark = ",", scientific = FALSE, trim = TRUE)

#' @export
`[[.torch.nn.modules.module.Module` <- function(x, i) {
  if (is.character(i)) return(`$.torch.nn.modules.module.Module`(x, i))
  i <- as.integer(i)
  if (i == 0L) stop("Indexing starts at 1 but found a 0.", call. = FALSE)
  reticulate::py_to_r(reticulate::py_get_item(x, if (i > 0L) i - 1L else i))
}

#' @export
`$<-.torch.nn.modules.module.Module` <- function(x, name, value) {
  .py_setattr(x, name, value)
  x
}

#' @export
py_to_r_wrapper.torch.nn.modules.module.Module <- function(x) {
  obj <- attr(x, "py_object")
  if (is.null(obj)) obj <- x
  # call the module directly (tensor results skip py_to_r); R errors raised
  # in R-defined modules come back as their original condition
  function(...) with_r_errors(.pycall(obj, ...))
}

# ---------------------------------------------------------------------------
# layers (PyTorch modules built with R argument conventions)
# ---------------------------------------------------------------------------

# Build torch.nn.<name>(...) from the (supplied) arguments of the calling
# constructor; size-like arguments become ints, dims are 1-based.
.layer <- function(name, env = parent.frame()) {
  fn <- sys.function(-1)
  args <- .args_with_defaults(env, formals(fn))
  names(args)[names(args) == ".weight"] <- "_weight"
  .pycall_list(.py("nn", "new_layer"), list(name), args)
}

# layer constructors usable as `inherit =` in nn_module()
.layer_classes <- c(
  nn_linear = "Linear", nn_conv1d = "Conv1d", nn_conv2d = "Conv2d",
  nn_conv_transpose2d = "ConvTranspose2d", nn_embedding = "Embedding",
  nn_batch_norm1d = "BatchNorm1d", nn_batch_norm2d = "BatchNorm2d", nn_layer_norm = "LayerNorm",
  nn_lstm = "LSTM", nn_gru = "GRU"
)

.layer_py_class <- function(f) {
  ns <- asNamespace("pyluz")
  for (nm in names(.layer_classes)) {
    if (identical(f, get(nm, envir = ns))) return(.layer_classes[[nm]])
  }
  NULL
}

#' Neural network layers
#'
#' R torch's layer constructors, building the corresponding PyTorch modules.
#' Arguments follow R torch (and PyTorch) names; sizes may be doubles;
#' `dim`-like arguments are 1-based (`nn_flatten()` defaults to
#' `start_dim = 2`, i.e. keeps the batch dimension). `nn_embedding()` takes
#' 1-based indices, as in R torch.
#'
#' @param in_features,out_features,bias Linear layer sizes and bias.
#' @param in_channels,out_channels,kernel_size,stride,padding,dilation,groups,padding_mode,output_padding
#'   Convolution arguments.
#' @param p,inplace Dropout probability / in-place activation.
#' @param dim,start_dim,end_dim,unflattened_size 1-based dimensions and sizes.
#' @param num_features,eps,momentum,affine,track_running_stats Batch norm arguments.
#' @param normalized_shape,elementwise_affine Layer norm arguments.
#' @param num_embeddings,embedding_dim,padding_idx,max_norm,norm_type,scale_grad_by_freq,sparse,.weight
#'   Embedding arguments (`padding_idx` is 1-based).
#' @param return_indices,ceil_mode,count_include_pad,divisor_override,output_size Pooling arguments.
#' @param negative_slope,alpha,beta,threshold,approximate Activation arguments.
#' @param input_size,hidden_size,num_layers,batch_first,dropout,bidirectional Recurrent layer arguments.
#' @param ... Ignored (`nn_identity()`), or modules (`nn_sequential()`).
#' @return A module (a Python `torch.nn.Module`).
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   fc <- nn_linear(4, 2)
#'   fc(torch_randn(3, 4))$shape
#'   net <- nn_sequential(nn_linear(4, 8), nn_relu(), nn_linear(8, 1))
#'   length(net$parameters)
#'   nn_flatten()(torch_ones(2, 3, 4))$shape
#' }
#' @name nn_layers
NULL

#' @rdname nn_layers
#' @export
nn_linear <- function(in_features, out_features, bias = TRUE) .layer("Linear")
#' @rdname nn_layers
#' @export
nn_conv1d <- function(in_channels, out_channels, kernel_size, stride = 1, padding = 0, dilation = 1,
                      groups = 1, bias = TRUE, padding_mode = "zeros") .layer("Conv1d")
#' @rdname nn_layers
#' @export
nn_conv2d <- function(in_channels, out_channels, kernel_size, stride = 1, padding = 0, dilation = 1,
                      groups = 1, bias = TRUE, padding_mode = "zeros") .layer("Conv2d")
#' @rdname nn_layers
#' @export
nn_conv_transpose2d <- function(in_channels, out_channels, kernel_size, stride = 1, padding = 0,
                                output_padding = 0, groups = 1, bias = TRUE, dilation = 1,
                                padding_mode = "zeros") .layer("ConvTranspose2d")
#' @rdname nn_layers
#' @export
nn_dropout <- function(p = 0.5, inplace = FALSE) .layer("Dropout")
#' @rdname nn_layers
#' @export
nn_dropout2d <- function(p = 0.5, inplace = FALSE) .layer("Dropout2d")
#' @rdname nn_layers
#' @export
nn_relu <- function(inplace = FALSE) .layer("ReLU")
#' @rdname nn_layers
#' @export
nn_leaky_relu <- function(negative_slope = 0.01, inplace = FALSE) .layer("LeakyReLU")
#' @rdname nn_layers
#' @export
nn_elu <- function(alpha = 1, inplace = FALSE) .layer("ELU")
#' @rdname nn_layers
#' @export
nn_gelu <- function(approximate = "none") .layer("GELU")
#' @rdname nn_layers
#' @export
nn_silu <- function(inplace = FALSE) .layer("SiLU")
#' @rdname nn_layers
#' @export
nn_softplus <- function(beta = 1, threshold = 20) .layer("Softplus")
#' @rdname nn_layers
#' @export
nn_sigmoid <- function() .layer("Sigmoid")
#' @rdname nn_layers
#' @export
nn_tanh <- function() .layer("Tanh")
#' @rdname nn_layers
#' @export
nn_softmax <- function(dim) .layer("Softmax")
#' @rdname nn_layers
#' @export
nn_log_softmax <- function(dim) .layer("LogSoftmax")
#' @rdname nn_layers
#' @export
nn_flatten <- function(start_dim = 2, end_dim = -1) .layer("Flatten")
#' @rdname nn_layers
#' @export
nn_unflatten <- function(dim, unflattened_size) .layer("Unflatten")
#' @rdname nn_layers
#' @export
nn_identity <- function(...) .pycall_list(.py("nn", "new_layer"), list("Identity"))
#' @rdname nn_layers
#' @export
nn_batch_norm1d <- function(num_features, eps = 1e-05, momentum = 0.1, affine = TRUE,
                            track_running_stats = TRUE) .layer("BatchNorm1d")
#' @rdname nn_layers
#' @export
nn_batch_norm2d <- function(num_features, eps = 1e-05, momentum = 0.1, affine = TRUE,
                            track_running_stats = TRUE) .layer("BatchNorm2d")
#' @rdname nn_layers
#' @export
nn_layer_norm <- function(normalized_shape, eps = 1e-05, elementwise_affine = TRUE) .layer("LayerNorm")
#' @rdname nn_layers
#' @export
nn_embedding <- function(num_embeddings, embedding_dim, padding_idx = NULL, max_norm = NULL,
                         norm_type = 2, scale_grad_by_freq = FALSE, sparse = FALSE,
                         .weight = NULL) .layer("Embedding")
#' @rdname nn_layers
#' @export
nn_max_pool1d <- function(kernel_size, stride = NULL, padding = 0, dilation = 1,
                          return_indices = FALSE, ceil_mode = FALSE) .layer("MaxPool1d")
#' @rdname nn_layers
#' @export
nn_max_pool2d <- function(kernel_size, stride = NULL, padding = 0, dilation = 1,
                          return_indices = FALSE, ceil_mode = FALSE) .layer("MaxPool2d")
#' @rdname nn_layers
#' @export
nn_avg_pool2d <- function(kernel_size, stride = NULL, padding = 0, ceil_mode = FALSE,
                          count_include_pad = TRUE, divisor_override = NULL) .layer("AvgPool2d")
#' @rdname nn_layers
#' @export
nn_adaptive_avg_pool2d <- function(output_size) .layer("AdaptiveAvgPool2d")
#' @rdname nn_layers
#' @export
nn_adaptive_max_pool2d <- function(output_size, return_indices = FALSE) .layer("AdaptiveMaxPool2d")
#' @rdname nn_layers
#' @export
nn_adaptive_max_pool1d <- function(output_size, return_indices = FALSE) .layer("AdaptiveMaxPool1d")
#' @rdname nn_layers
#' @export
nn_lstm <- function(input_size, hidden_size, num_layers = 1, bias = TRUE, batch_first = FALSE,
                    dropout = 0, bidirectional = FALSE) .layer("LSTM")
#' @rdname nn_layers
#' @export
nn_gru <- function(input_size, hidden_size, num_layers = 1, bias = TRUE, batch_first = FALSE,
                   dropout = 0, bidirectional = FALSE) .layer("GRU")

#' Containers
#'
#' `nn_sequential(...)` chains modules (names become submodule names);
#' `nn_module_list(modules)` holds a list of modules. Both are indexed from 1
#' with `[[`.
#'
#' @param ... Modules (optionally named).
#' @param modules A list of modules.
#' @return A `torch.nn.Sequential` / `torch.nn.ModuleList`.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   net <- nn_sequential(nn_linear(2, 3), nn_relu())
#'   net[[1]]
#'   layers <- nn_module_list(list(nn_linear(2, 2), nn_linear(2, 2)))
#'   length(layers)
#' }
#' @export
nn_sequential <- function(...) {
  mods <- rlang::list2(...)   # nn_sequential(!!!layers) splices, as in R torch
  nms <- names(mods)
  if (!is.null(nms) && all(nzchar(nms))) {
    .pycall(.py("nn", "sequential"), unname(mods), as.list(nms))
  } else {
    .pycall(.py("nn", "sequential"), unname(mods))
  }
}

#' @rdname nn_sequential
#' @export
nn_module_list <- function(modules = list()) {
  .pycall(.py("nn", "module_list"), unname(modules))
}

#' @rdname nn_sequential
#' @param dict A named list of modules (`nn_module_dict()`).
#' @export
nn_module_dict <- function(dict) {
  if (length(dict) && (is.null(names(dict)) || any(!nzchar(names(dict))))) {
    stop("`dict` must be a named list of modules.", call. = FALSE)
  }
  .pycall(.py("nn", "module_dict"), unname(dict), as.list(names(dict)))
}

#' @export
`[.nn_sequential` <- function(x, i) {
  n <- .pycall(.py("builtins", "len"), x)
  keep <- seq_len(n)[i]
  if (anyNA(keep)) stop("index out of range for a sequential of length ", n, call. = FALSE)
  .pycall(.py("nn", "sequential"), lapply(keep, function(k) x[[k]]))
}

# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------

#' Loss modules
#'
#' `nn_cross_entropy_loss()` and `nn_nll_loss()` take **1-based class
#' targets** (1..C, as in R torch); a target of 0 is an error. Binary losses
#' accept integer or logical 0/1 targets.
#'
#' @param weight,ignore_index,reduction,label_smoothing,pos_weight As in R torch
#'   (`ignore_index` is a 1-based class; the default -100 ignores nothing).
#' @param beta,margin,p,eps,swap Arguments of the smooth L1 and triplet losses.
#' @return A loss module (a Python `torch.nn.Module`) with a `reduction` field.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   loss <- nn_cross_entropy_loss()
#'   logits <- torch_randn(4, 3)
#'   target <- torch_tensor(c(1L, 3L, 2L, 3L))
#'   loss(logits, target)
#' }
#' @name nn_losses
NULL

#' @rdname nn_losses
#' @export
nn_cross_entropy_loss <- function(weight = NULL, ignore_index = -100, reduction = "mean",
                                  label_smoothing = 0) .layer("CrossEntropyLoss")
#' @rdname nn_losses
#' @export
nn_nll_loss <- function(weight = NULL, ignore_index = -100, reduction = "mean") .layer("NLLLoss")
#' @rdname nn_losses
#' @export
nn_mse_loss <- function(reduction = "mean") .layer("MSELoss")
#' @rdname nn_losses
#' @export
nn_l1_loss <- function(reduction = "mean") .layer("L1Loss")
#' @rdname nn_losses
#' @export
nn_bce_loss <- function(weight = NULL, reduction = "mean") .layer("BCELoss")
#' @rdname nn_losses
#' @export
nn_bce_with_logits_loss <- function(weight = NULL, reduction = "mean", pos_weight = NULL)
  .layer("BCEWithLogitsLoss")
#' @rdname nn_losses
#' @export
nn_smooth_l1_loss <- function(reduction = "mean", beta = 1) .layer("SmoothL1Loss")
#' @rdname nn_losses
#' @export
nn_triplet_margin_loss <- function(margin = 1, p = 2, eps = 1e-06, swap = FALSE, reduction = "mean")
  .layer("TripletMarginLoss")
