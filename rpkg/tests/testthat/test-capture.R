# capture = TRUE: an nn_module()'s forward traced once per key and replayed; the fit must equal
# the eager R fit bit for bit, and every hazard must fall back with its reason.

capture_fit <- function(module, data, capture, epochs = 2, batch_size = 32, valid_data = NULL,
                        callbacks = NULL, lr = 0.01, setup_capture = FALSE) {
  torch_manual_seed(7)
  module %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam, capture = setup_capture) %>%
    set_opt_hparams(lr = lr) %>%
    fit(data, epochs = epochs, verbose = FALSE, capture = capture, valid_data = valid_data,
        callbacks = callbacks, dataloader_options = list(batch_size = batch_size, drop_last = FALSE))
}

expect_same_weights <- function(a, b) expect_state_dicts_equal(a$model$state_dict(), b$model$state_dict())

mlp_data <- function(n = 160) {
  torch_manual_seed(3)
  list(torch_randn(n, 32), torch_randint(1, 11, n)$to(dtype = torch_long()))
}

# BatchNorm + dropout: buffers and torch's RNG that a trace must leave as the R forward does.
bn_dropout_net <- function() {
  nn_module(
    "BNNet",
    initialize = function() {
      self$fc1 <- nn_linear(32, 16)
      self$bn <- nn_batch_norm1d(16)
      self$drop <- nn_dropout(0.3)
      self$fc2 <- nn_linear(16, 10)
    },
    forward = function(x) self$fc2(self$drop(nnf_relu(self$bn(self$fc1(x)))))
  )
}

mlp_with <- function(forward, private = NULL, initialize = NULL) {
  nn_module(
    "CaptureMLP",
    initialize = initialize %||% function() {
      self$fc1 <- nn_linear(32, 64)
      self$fc2 <- nn_linear(64, 10)
      self$calls <- 0
    },
    forward = forward,
    private = private
  )
}

bench_mlp <- mlp_with(function(x) self$fc2(nnf_relu(self$fc1(x))))

test_that("a captured fit of the bench MLP equals the eager R fit bit for bit, and is traced", {
  skip_if_no_engine()
  data <- mlp_data()
  valid <- mlp_data(40)
  eager <- capture_fit(bench_mlp, data, capture = FALSE, valid_data = valid)
  traced <- capture_fit(bench_mlp, data, capture = TRUE, valid_data = valid)
  expect_same_weights(eager, traced)
  expect_null(eager$capture)
  expect_true(all(traced$capture$traced))
  expect_setequal(traced$capture$key, c("train, input [32, 32]", "eval (no grad), input [32, 32]",
                                        "eval (no grad), input [8, 32]"))
  # setup(capture = TRUE) is fit()'s default; fit(capture = FALSE) overrides it
  from_setup <- capture_fit(bench_mlp, data, capture = NULL, setup_capture = TRUE, valid_data = valid)
  expect_true(all(from_setup$capture$traced))
  expect_same_weights(eager, from_setup)
  expect_null(capture_fit(bench_mlp, data, capture = FALSE, setup_capture = TRUE)$capture)
  expect_error(capture_fit(bench_mlp, data, capture = NA), "`capture` must be TRUE or FALSE or NULL")
})

test_that("luz's get-started CNN: captured fit equals the eager fit (dropout draws alike)", {
  skip_if_no_engine()
  convnet <- nn_module(
    "Net",
    initialize = function() {
      self$conv1 <- nn_conv2d(1, 8, 3, 1)
      self$conv2 <- nn_conv2d(8, 16, 3, 1)
      self$dropout1 <- nn_dropout(0.25)
      self$dropout2 <- nn_dropout(0.5)
      self$fc1 <- nn_linear(2304, 32)
      self$fc2 <- nn_linear(32, 10)
    },
    forward = function(x) {
      x %>%
        self$conv1() %>% nnf_relu() %>%
        self$conv2() %>% nnf_relu() %>%
        nnf_max_pool2d(2) %>%
        self$dropout1() %>%
        torch_flatten(start_dim = 2) %>%
        self$fc1() %>% nnf_relu() %>%
        self$dropout2() %>%
        self$fc2()
    }
  )
  torch_manual_seed(5)
  data <- list(torch_randn(48, 1, 28, 28), torch_randint(1, 11, 48)$to(dtype = torch_long()))
  eager <- capture_fit(convnet, data, capture = FALSE, batch_size = 16)
  traced <- capture_fit(convnet, data, capture = TRUE, batch_size = 16)
  expect_true(all(traced$capture$traced))
  expect_same_weights(eager, traced)
})

test_that("BatchNorm + dropout with a last partial batch: captured fit equals eager (buffers too)", {
  skip_if_no_engine()
  bn_net <- bn_dropout_net()
  data <- mlp_data(100)  # batches of 32, 32, 32, 4
  valid <- mlp_data(20)
  eager <- capture_fit(bn_net, data, capture = FALSE, valid_data = valid)
  traced <- capture_fit(bn_net, data, capture = TRUE, valid_data = valid)
  expect_true(all(traced$capture$traced))
  expect_true("train, input [4, 32]" %in% traced$capture$key)
  expect_same_weights(eager, traced)  # state_dict: running_mean/var, num_batches_tracked
  expect_equal(as.numeric(as_array(traced$model$bn$num_batches_tracked)), 8)
})

hazards <- list(
  item = list(function(x) self$fc2(nnf_relu(self$fc1(x))) * (1 + 0 * x$sum()$item()),
              "reads a value back to the host \\(`\\$item\\(\\)`\\)"),
  as_array = list(function(x) self$fc2(nnf_relu(self$fc1(x))) * (1 + 0 * sum(as_array(x$mean()))),
                  "reads a value back to the host \\(`as_array\\(\\)`"),
  if_tensor = list(function(x) {
    y <- self$fc2(nnf_relu(self$fc1(x)))
    if (as.logical(x$sum() > -1e9)) y else -y
  }, "reads a value back to the host"),
  ctx = list(function(x) {
    if (is.null(ctx)) stop("no ctx")
    self$fc2(nnf_relu(self$fc1(x)))
  }, "uses `ctx`"),
  private = list(function(x) self$fc2(nnf_relu(self$fc1(x))) * private$k, "uses `private`"),
  superassign = list(function(x) {
    capture_counter <<- capture_counter + 1
    self$fc2(nnf_relu(self$fc1(x)))
  }, "assigns with `<<-`"),
  r_rng = list(function(x) self$fc2(nnf_relu(self$fc1(x))) * (1 + 0 * runif(1)),
               "uses R's random numbers \\(`runif\\(\\)`\\)"),
  print = list(function(x) {
    cat("")
    self$fc2(nnf_relu(self$fc1(x)))
  }, "prints \\(`cat\\(\\)`\\)"),
  self_assign = list(function(x) {
    self$calls <- self$calls + 1
    self$fc2(nnf_relu(self$fc1(x)))
  }, "assigns a module field \\(`self\\$calls <-`\\)"),
  helper = list(function(x) self$helper(x), "uses R's random numbers \\(`sample\\(\\)`\\)")
)

test_that("each hazard runs the R forward eagerly, with its reason, and the fit equals eager", {
  skip_if_no_engine()
  capture_counter <<- 0
  on.exit(rm("capture_counter", envir = globalenv()))
  data <- mlp_data(64)
  for (name in names(hazards)) {
    h <- hazards[[name]]
    module <- if (name == "helper") {
      nn_module(
        "CaptureHelper",
        initialize = function() {
          self$fc1 <- nn_linear(32, 64)
          self$fc2 <- nn_linear(64, 10)
        },
        helper = function(x) self$fc2(nnf_relu(self$fc1(x))) * (1 + 0 * sample(1)),
        forward = h[[1]]
      )
    } else {
      mlp_with(h[[1]], private = if (name == "private") list(k = 1))
    }
    eager <- capture_fit(module, data, capture = FALSE)
    traced <- capture_fit(module, data, capture = TRUE)
    expect_false(any(traced$capture$traced), label = name)
    expect_match(traced$capture$reason, h[[2]], label = name)
    expect_same_weights(eager, traced)
  }
  expect_gt(capture_counter, 0)
})

test_that("assigning a module field after capture drops the programs", {
  skip_if_no_engine()
  scaled <- nn_module(
    "Scaled",
    initialize = function() {
      self$fc <- nn_linear(32, 10)
      self$scale <- 1
    },
    forward = function(x) self$fc(x) * self$scale
  )
  rescale <- luz_callback("rescale", on_epoch_end = function() ctx$model$scale <- ctx$model$scale * 3)
  data <- mlp_data(64)
  eager <- capture_fit(scaled, data, capture = FALSE, epochs = 3, callbacks = list(rescale()))
  traced <- capture_fit(scaled, data, capture = TRUE, epochs = 3, callbacks = list(rescale()))
  expect_equal(traced$model$scale, 27)
  expect_same_weights(eager, traced)
  # without dropping, the replay would keep scale = 1: the fits would differ
  # The report tells the truth: the last epoch's assignment dropped the program (none in use now);
  # each epoch traced it again (3 traces, 3 drops), and all 6 batches replayed.
  cap <- traced$capture
  expect_equal(cap$key, "train, input [32, 32]")
  expect_equal(cap$status, "dropped")
  expect_false(cap$traced)
  expect_match(cap$reason, "a module field was assigned after tracing")
  expect_equal(c(cap$traces, cap$drops, cap$replays, cap$eager_calls), c(3L, 3L, 6L, 0L))
  # the next call traces again: the report follows
  preds <- predict(traced, data[[1]][1:32, ], capture = TRUE)
  expect_true(torch_equal(preds, predict(traced, data[[1]][1:32, ], capture = FALSE)))
  cap <- traced$capture
  expect_equal(cap$status, c("dropped", "traced"))
  expect_equal(cap$key[2], "eval (no grad), input [32, 32]")
})

test_that("fitted$capture reports fallbacks per key with the counts of eager calls", {
  skip_if_no_engine()
  h <- hazards$item
  traced <- capture_fit(mlp_with(h[[1]]), mlp_data(64), capture = TRUE, valid_data = mlp_data(40))
  cap <- traced$capture
  expect_equal(cap$status, rep("eager", 3))
  expect_false(any(cap$traced))
  expect_match(cap$reason, h[[2]])
  expect_equal(cap$eager_calls[cap$key == "train, input [32, 32]"], 4L)  # 2 batches x 2 epochs
  expect_equal(sum(cap$replays), 0L)
  out <- capture.output(capture_fit(mlp_with(h[[1]]), mlp_data(64), capture = TRUE) %>%
                          predict(mlp_data(8)[[1]], verbose = TRUE))
  expect_match(paste(out, collapse = "\n"), "Tracing: no program in use; .*eager: reads a value back")
})

test_that("the number of programs is capped: new input signatures beyond it run eagerly", {
  skip_if_no_engine()
  m <- bench_mlp()
  tf <- pyluz:::engine_module("interop.capture")$TracedForward(m, max_programs = 2L)
  outs <- lapply(1:3, function(n) {
    x <- torch_randn(n, 32)
    list(tf(x), m(x))
  })
  for (o in outs) expect_true(torch_equal(o[[1]], o[[2]]))
  report <- tf$report
  expect_equal(unname(unlist(report[1:2])), c("traced", "traced"))
  expect_match(report[[3]], "more than 2 input signatures")
})

test_that("predict() and evaluate() replay eval-mode programs, equal to the R forward bit for bit", {
  skip_if_no_engine()
  bn_net <- bn_dropout_net()
  valid <- mlp_data(32)
  traced <- capture_fit(bn_net, mlp_data(100), capture = TRUE, valid_data = valid)
  newdata <- mlp_data(50)  # batches of 32 (traced in the fit's validation) and a partial 18
  key32 <- "eval (no grad), input [32, 32]"
  key18 <- "eval (no grad), input [18, 32]"
  before <- traced$capture
  expect_equal(before$replays[before$key == key32], 2L)  # one validation batch per epoch
  state <- traced$model$state_dict()
  eager <- predict(traced, newdata, capture = FALSE, dataloader_options = list(batch_size = 32))
  expect_identical(traced$capture, before)  # capture = FALSE: nothing traced or replayed
  replayed <- predict(traced, newdata, dataloader_options = list(batch_size = 32))
  expect_true(torch_equal(eager, replayed))
  after <- traced$capture
  expect_equal(after$replays[after$key == key32], 3L)
  expect_equal(after$status[after$key == key18], "traced")
  expect_equal(after$traces[after$key == key32], 1L)  # the fit's program, not traced again
  # evaluate: same loss with and without; the model (BatchNorm buffers) untouched
  ev_eager <- evaluate(traced, newdata, capture = FALSE, dataloader_options = list(batch_size = 32))
  ev_traced <- evaluate(traced, newdata, dataloader_options = list(batch_size = 32))
  expect_identical(get_metrics(ev_eager), get_metrics(ev_traced))
  expect_equal(traced$capture$replays[traced$capture$key == key18], 2L)
  expect_state_dicts_equal(traced$model$state_dict(), state)
  expect_error(predict(traced, newdata, capture = "no"), "`capture` must be TRUE or FALSE or NULL")

  # a fit without tracing: predict(capture = TRUE) traces, with R's static check of the forward
  plain <- capture_fit(bn_net, mlp_data(100), capture = FALSE)
  expect_null(plain$capture)
  p_eager <- predict(plain, newdata)
  expect_null(plain$capture)
  expect_true(torch_equal(predict(plain, newdata, capture = TRUE), p_eager))
  expect_true(all(plain$capture$traced))
  hazard <- capture_fit(mlp_with(hazards$print[[1]]), mlp_data(64), capture = FALSE)
  expect_true(torch_equal(predict(hazard, newdata, capture = TRUE), predict(hazard, newdata)))
  expect_match(hazard$capture$reason, hazards$print[[2]])
})
