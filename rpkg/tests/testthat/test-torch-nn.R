test_that("nn_module registers submodules and parameters, keeps R fields", {
  skip_if_no_torch()
  Net <- nn_module(
    "Net",
    initialize = function(n_in, n_out, hidden = 8) {
      self$fc1 <- nn_linear(n_in, hidden)
      self$fc2 <- nn_linear(hidden, n_out)
      self$scale <- nn_parameter(torch_ones(1))
      self$running <- nn_buffer(torch_zeros(2))
      self$calls <- 0
    },
    forward = function(x) {
      self$calls <- self$calls + 1
      x %>% self$fc1() %>% nnf_relu() %>% self$fc2() * self$scale
    },
    describe = function() sprintf("%s calls", self$calls)
  )
  expect_s3_class(Net, "nn_module_generator")
  model <- Net(4, 3)
  expect_true(inherits(model, "torch.nn.modules.module.Module"))
  params <- model$parameters
  expect_equal(sort(names(params)), sort(c("scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")))
  n_params <- sum(vapply(params, function(p) p$numel(), numeric(1)))
  expect_equal(n_params, 1 + 4 * 8 + 8 + 8 * 3 + 3)
  expect_equal(names(model$buffers), "running")
  expect_true("running" %in% names(model$state_dict()))
  out <- model(torch_randn(5, 4))
  expect_equal(out$shape, c(5L, 3L))
  expect_equal(model$calls, 1)
  expect_equal(model$describe(), "1 calls")
  model$calls <- 10
  expect_equal(model$describe(), "10 calls")
  expect_true(model$training)
  model$eval()
  expect_false(model$training)
  model$train()
  expect_true(model$training)
  expect_equal(names(model$children), c("fc1", "fc2"))
})

test_that("R-defined modules look like Python modules from Python", {
  skip_if_no_torch()
  Net <- nn_module(
    initialize = function() self$fc <- nn_linear(2, 2),
    forward = function(x) self$fc(x),
    loss = function(pred, target) nnf_mse_loss(pred, target),
    set_optimizers = function(lr = 0.1) list(a = optim_sgd(self$fc$parameters, lr = lr))
  )
  model <- Net()
  py <- py_functions(paste(
    "import torch",
    "def inspect(m):",
    "    x = torch.ones(3, 2)",
    "    opts = m.set_optimizers(lr=0.5)",
    "    return dict(is_module=isinstance(m, torch.nn.Module), has_loss=hasattr(m, 'loss'),",
    "                has_step=hasattr(m, 'step'), out=list(m(x).shape),",
    "                loss=float(m.loss(m(x), torch.zeros(3, 2)).detach()),",
    "                opt_type=type(opts).__name__, lr=opts['a'].param_groups[0]['lr'],",
    "                n=sum(p.numel() for p in m.parameters()),",
    "                r_backed=getattr(m, '__pyluz_r__', False))",
    sep = "\n"))
  info <- py$inspect(model)
  expect_true(info$is_module)
  expect_true(info$has_loss)
  expect_false(info$has_step)
  expect_equal(unlist(info$out), c(3L, 2L))
  expect_gt(info$loss, 0)
  expect_equal(info$opt_type, "dict")
  expect_equal(info$lr, 0.5)
  expect_equal(info$n, 6L)
  expect_true(info$r_backed)
  # the Python class builds instances too (the engine calls it with hparams)
  cls <- reticulate::r_to_py(Net)
  m2 <- cls()
  expect_equal(length(m2$parameters), 2)
})

test_that("forward/backward/optimizer steps decrease the loss", {
  skip_if_no_torch()
  torch_manual_seed(1)
  set.seed(1)
  x <- torch_tensor(matrix(rnorm(64 * 4), 64))
  y <- torch_tensor(sample(1:3, 64, replace = TRUE))
  Net <- nn_module(
    initialize = function() {
      self$body <- nn_sequential(nn_linear(4, 16), nn_relu(), nn_linear(16, 3))
    },
    forward = function(x) self$body(x)
  )
  model <- Net()
  opt <- optim_adam(model$parameters, lr = 0.05)
  loss_fn <- nn_cross_entropy_loss()
  losses <- numeric()
  for (i in 1:40) {
    opt$zero_grad()
    loss <- loss_fn(model(x), y)
    loss$backward()
    opt$step()
    losses <- c(losses, loss$item())
  }
  expect_lt(losses[40], losses[1] * 0.8)
  expect_equal(opt$param_groups[[1]]$lr, 0.05)
})

test_that("inheritance, super, private and active", {
  skip_if_no_torch()
  Base <- nn_module(
    "Base",
    initialize = function(n) {
      self$fc <- nn_linear(n, n)
      private$secret <- 42
    },
    forward = function(x) self$fc(x),
    tag = function() "base",
    private = list(secret = NULL, hidden = function() private$secret),
    active = list(double_secret = function() private$secret * 2)
  )
  Child <- nn_module(
    "Child",
    inherit = Base,
    initialize = function(n) {
      super$initialize(n)
      self$out <- nn_linear(n, 1)
    },
    forward = function(x) self$out(super$forward(x)),
    tag = function() paste("child of", super$tag()),
    reveal = function() private$hidden()
  )
  m <- Child(3)
  expect_equal(m(torch_randn(2, 3))$shape, c(2L, 1L))
  expect_equal(length(m$parameters), 4)
  expect_equal(m$tag(), "child of base")
  expect_equal(m$reveal(), 42)
  expect_equal(m$double_secret, 84)
  py_cls <- reticulate::r_to_py(Child)
  bi <- reticulate::import_builtins()
  expect_true(bi$issubclass(py_cls, reticulate::r_to_py(Base)))
})

test_that("inherit from a Python module class", {
  skip_if_no_torch()
  MyLinear <- nn_module(
    inherit = nn_linear,
    forward = function(x) super$forward(x) * 2
  )
  m <- MyLinear(3, 2)
  x <- torch_randn(4, 3)
  expect_equal(length(m$parameters), 2)
  ref <- torch_matmul(x, m$weight$t()) + m$bias
  expect_true(torch_allclose(m(x), ref * 2, atol = 1e-6))
})

test_that("modules can be deep-copied and their state dict loaded", {
  skip_if_no_torch()
  Net <- nn_module(
    initialize = function() {
      self$fc <- nn_linear(2, 1)
      self$note <- "hello"
    },
    forward = function(x) self$fc(x),
    note_of = function() self$note
  )
  m <- Net()
  m2 <- m$clone()
  expect_equal(m2$note_of(), "hello")
  with_no_grad(m2$fc$weight$fill_(0))
  expect_false(torch_equal(m$fc$weight, m2$fc$weight))
  m2$load_state_dict(m$state_dict())
  expect_true(torch_equal(m$fc$weight, m2$fc$weight))
  x <- torch_randn(3, 2)
  expect_true(torch_allclose(m(x), m2(x)))
})

test_that("R errors in forward come back as the original condition", {
  skip_if_no_torch()
  Bad <- nn_module(forward = function(x) rlang::abort("boom", class = "my_forward_error"))
  m <- Bad()
  expect_error(m(torch_ones(1)), class = "my_forward_error")
  seq_model <- nn_sequential(nn_linear(1, 1), Bad())
  expect_error(seq_model(torch_ones(1)), class = "my_forward_error")
})

test_that("layers follow R torch conventions", {
  skip_if_no_torch()
  x <- torch_randn(2, 3, 4, 5)
  expect_equal(nn_flatten()(x)$shape, c(2L, 60L))
  expect_equal(nn_flatten(start_dim = 3)(x)$shape, c(2L, 3L, 20L))
  sm <- nn_softmax(dim = 2)(torch_randn(2, 3))
  expect_equal(as_array(sm$sum(dim = 2)), c(1, 1), tolerance = 1e-6)
  conv <- nn_conv2d(3, 8, kernel_size = 3, padding = 1)
  expect_equal(conv(torch_randn(1, 3, 6, 6))$shape, c(1L, 8L, 6L, 6L))
  expect_equal(nn_conv1d(2, 4, 3)(torch_randn(1, 2, 10))$shape, c(1L, 4L, 8L))
  expect_equal(nn_max_pool2d(2)(torch_randn(1, 1, 4, 4))$shape, c(1L, 1L, 2L, 2L))
  expect_equal(nn_batch_norm1d(3)(torch_randn(4, 3))$shape, c(4L, 3L))
  expect_equal(nn_batch_norm2d(3)(torch_randn(2, 3, 4, 4))$shape, c(2L, 3L, 4L, 4L))
  expect_equal(nn_layer_norm(5)(torch_randn(2, 5))$shape, c(2L, 5L))
  expect_equal(nn_dropout(0.5)(torch_ones(3))$shape, 3L)
  expect_equal(nn_dropout2d(0.5)(torch_ones(1, 2, 3, 3))$shape, c(1L, 2L, 3L, 3L))
  expect_equal(as_array(nn_identity()(torch_ones(2))), c(1, 1))
  expect_equal(as_array(nn_relu()(torch_tensor(c(-1, 1)))), c(0, 1))
  expect_equal(as_array(nn_sigmoid()(torch_tensor(0))), 0.5)
  expect_equal(as_array(nn_tanh()(torch_tensor(0))), 0)
  # embeddings take 1-based indices
  emb <- nn_embedding(4, 2)
  idx <- torch_tensor(c(1L, 4L))
  expect_true(torch_equal(emb(idx), emb$weight[c(1, 4), ]))
  emb_p <- nn_embedding(4, 2, padding_idx = 1)
  expect_equal(as_array(emb_p(torch_tensor(1L))), matrix(0, 1, 2))
  seq_model <- nn_sequential(nn_linear(3, 4), nn_relu(), nn_linear(4, 1))
  expect_equal(seq_model(torch_randn(2, 3))$shape, c(2L, 1L))
  expect_true(inherits(seq_model[[1]], "torch.nn.modules.linear.Linear"))
  expect_equal(seq_model[[3]]$out_features, 1L)
  named <- nn_sequential(first = nn_linear(2, 2), act = nn_relu())
  expect_equal(names(named$children), c("first", "act"))
  ml <- nn_module_list(list(nn_linear(2, 2), nn_linear(2, 3)))
  expect_equal(length(ml), 2)
  expect_equal(ml[[2]]$out_features, 3L)
  Stack <- nn_module(
    initialize = function() self$layers <- nn_module_list(list(nn_linear(2, 2), nn_linear(2, 2))),
    forward = function(x) {
      for (i in seq_len(length(self$layers))) x <- self$layers[[i]](x)
      x
    }
  )
  st <- Stack()
  expect_equal(length(st$parameters), 4)
  expect_equal(st(torch_ones(1, 2))$shape, c(1L, 2L))
})

test_that("module helpers: device, print", {
  skip_if_no_torch()
  m <- nn_linear(2, 3)
  expect_equal(as.character(m$device), "cpu")
  expect_output(print(m), "containing 9 parameters")
  Net <- nn_module("Net", initialize = function() self$fc <- nn_linear(2, 2), forward = function(x) x)
  expect_output(print(Net()), "fc: <nn_linear> #6 parameters")
  expect_output(print(Net), "nn_module_generator")
})

test_that("Python base with an R initialize, nested R modules, datasets inheriting", {
  skip_if_no_torch()
  Wide <- nn_module(
    inherit = nn_linear,
    initialize = function(n_in, n_out) {
      super$initialize(n_in, n_out * 2)
      self$k <- n_out
    },
    forward = function(x) super$forward(x)[, 1:self$k]
  )
  w <- Wide(3, 2)
  expect_equal(w(torch_randn(4, 3))$shape, c(4L, 2L))
  expect_equal(w$out_features, 4L)
  w2 <- reticulate::r_to_py(Wide)(3L, 5L)   # built by Python, as the engine does
  expect_equal(w2(torch_randn(1, 3))$shape, c(1L, 5L))

  Inner <- nn_module(
    initialize = function() self$fc <- nn_linear(2, 2),
    forward = function(x) self$fc(x),
    hello = function() "inner"
  )
  Outer <- nn_module(
    initialize = function() {
      self$inner <- Inner()
      self$head <- nn_linear(2, 1)
    },
    forward = function(x) self$head(self$inner(x))
  )
  o <- Outer()
  expect_equal(o(torch_ones(3, 2))$shape, c(3L, 1L))
  expect_equal(length(o$parameters), 4)
  expect_equal(o$inner$hello(), "inner")
  o$to(dtype = torch_double())
  expect_true(o$inner$fc$weight$dtype == torch_double())
  expect_true(o(torch_ones(1, 2, dtype = torch_double()))$dtype == torch_double())

  Base <- dataset(initialize = function(n) self$n <- n, .length = function() self$n, .getitem = function(i) i)
  Sub <- dataset(inherit = Base, .getitem = function(i) super$.getitem(i) * 100)
  s <- Sub(3)
  expect_equal(length(s), 3)
  expect_equal(s[2], 200)
})

test_that("methods see ctx: the engine's Python attribute or a bound R object", {
  skip_if_no_torch()
  Net <- nn_module(
    initialize = function() self$fc <- nn_linear(1, 1),
    forward = function(x) self$fc(x),
    which_opt = function() ctx$opt_name
  )
  m <- Net()
  expect_null(m$which_opt())
  types <- reticulate::import("types")
  reticulate::py_set_attr(m, "ctx", types$SimpleNamespace(opt_name = "opt"))
  expect_equal(m$which_opt(), "opt")
  rtorch_bind_ctx(m, list(opt_name = "from R"))
  expect_equal(m$which_opt(), "from R")
})

test_that("nn_init_* and gradient clipping", {
  skip_if_no_torch()
  fc <- nn_linear(3, 2)
  nn_init_zeros_(fc$bias)
  expect_equal(as_array(fc$bias), c(0, 0))
  nn_init_constant_(fc$weight, 0.5)
  expect_equal(as_array(fc$weight), matrix(0.5, 2, 3))
  nn_init_xavier_uniform_(fc$weight)
  expect_true(all(abs(as_array(fc$weight)) <= sqrt(6 / 5)))
  fc(torch_ones(1, 3) * 100)$sum()$backward()
  total <- nn_utils_clip_grad_norm_(fc$parameters, max_norm = 1)
  expect_gt(total$item(), 1)
  norms <- sapply(fc$parameters, function(p) p$grad$norm()$item())
  expect_lte(sqrt(sum(norms^2)), 1 + 1e-5)
})

test_that("R torch pieces the gallery needs: .classes, splicing, `[`, module dicts, adaptive max pooling", {
  skip_if_no_torch()
  expect_equal(nn_conv_transpose2d(2, 3, 3)$.classes, c("nn_conv_transpose2d", "nn_module"))
  Net <- nn_module("Net", initialize = function() self$a <- nn_linear(1, 1), forward = function(x) self$b(x))
  expect_null(Net()$b)                                       # a missing field is NULL (R6 semantics)
  expect_error(Net()(torch_ones(1, 1)), "attempt to apply non-function")
  layers <- list(nn_linear(2, 3), nn_relu(), nn_linear(3, 1))
  s <- nn_sequential(!!!layers)
  expect_equal(length(s$parameters), 4)
  tail2 <- s[2:3]
  expect_s3_class(tail2, "nn_sequential")
  expect_equal(tail2(torch_ones(4, 3))$shape, c(4L, 1L))
  d <- nn_module_dict(list(a = nn_relu(), b = nn_linear(1, 1)))
  expect_equal(class(d)[1], "nn_module_dict")
  expect_equal(names(d$children), c("a", "b"))
  x <- torch_tensor(array(c(1, 5, 2, 0, 3, 4, 8, 7, 6, 1, 0, 9, 2, 2, 2, 2), dim = c(1, 1, 4, 4)))
  expect_tensor_equal(nn_adaptive_max_pool2d(c(2, 2))(x)$view(-1), c(5, 6, 8, 9))   # x[i, j] is column-major
  expect_tensor_equal(nnf_adaptive_max_pool2d(x, c(1, 1))$view(-1), 9)
  expect_true(is_nn_module(nn_relu()))
  expect_false(is_nn_module(torch_ones(1)))
})

test_that("super$parameters in a module inheriting a layer (luz's two-optimizer example)", {
  skip_if_no_torch()
  m <- nn_module(inherit = nn_linear, set_optimizers = function(lr = 0.1) {
    list(weight = optim_adam(list(super$parameters$weight), lr = lr),
         bias = optim_adam(list(super$parameters$bias), lr = lr))
  })(2, 3)
  opts <- m$set_optimizers()
  expect_equal(dim(opts$weight$param_groups[[1]]$params[[1]]), c(3L, 2L))
  expect_equal(dim(opts$bias$param_groups[[1]]$params[[1]]), 3L)
})

test_that("dropout2d drops channels as R torch's does, of a 2-d or 3-d input too, silently", {
  skip_if_no_torch()
  torch_manual_seed(3)
  # PyTorch's dropout2d warns on these inputs (once per call site); R torch's doesn't
  expect_no_warning(nn_dropout2d(0.5)(torch_ones(8, 4)))
  expect_no_warning(nnf_dropout2d(torch_ones(2, 8, 4), p = 0.5))
  # (N, C) input: each element on its own
  a <- as_array(nn_dropout2d(0.5)(torch_ones(50, 40)))
  expect_setequal(unique(as.vector(a)), c(0, 2))
  expect_true(any(apply(a, 1, function(r) length(unique(r)) == 2)))
  # (N, C, H, W) input: whole channels
  a <- as_array(nnf_dropout2d(torch_ones(4, 6, 3, 3), p = 0.5))
  expect_true(all(apply(a, c(1, 2), function(ch) length(unique(as.vector(ch))) == 1)))
  expect_true(inherits(nn_dropout2d(0.5), "nn_dropout2d"))
  m <- nn_dropout2d(0.5)
  m$eval()
  expect_equal(as_array(m(torch_ones(2, 3))), matrix(1, 2, 3))
})

test_that("an nn_embedding (1-based ids) is exported and traced silently, with the same values", {
  skip_if_no_torch()
  # the zero-id check reads the data; while a program is recorded it is skipped (torch.export
  # would print a graph and a data-dependent warning, tracing a TracerWarning; pyluz traces
  # without check_trace)
  out <- run_fresh_r(paste(
    "library(pyluz)",
    "emb <- nn_embedding(10, 3)",
    "x <- torch_tensor(matrix(c(1L, 5L, 10L, 2L), 2))",
    "te <- reticulate::import('torch')",
    "ep <- te$export$export(emb, reticulate::tuple(x))",
    "tr <- te$jit$trace(emb, reticulate::tuple(x), check_trace = FALSE)",
    "stopifnot(isTRUE(all.equal(as_array(ep$module()(x)), as_array(emb(x)))))",
    "stopifnot(isTRUE(all.equal(as_array(tr(x)), as_array(emb(x)))))",
    "cat('done\\n')",
    sep = "\n"
  ))
  expect_equal(out, "done")
  expect_error(nn_embedding(10, 3)(torch_tensor(c(0L, 1L))), "1-based|0")
})
