# Callbacks written in R (luz_callback): order, ctx values, weights, inheritance, state, dispatch.

py_setup <- function(fx, torch, metrics = NULL) {
  setup(fx$Net, loss = torch$nn$CrossEntropyLoss(), optimizer = torch$optim$SGD, metrics = metrics) %>%
    set_hparams(n_in = 4, hidden = 8, n_out = 3) %>%
    set_opt_hparams(lr = 0.05)
}

test_that("breakpoints are called in luz's order with ctx$epoch and ctx$iter", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(64)
  calls <- character()
  rec <- function(what) calls <<- c(calls, what)
  recorder <- luz_callback(
    "recorder",
    on_fit_begin = function() rec("fit_begin"),
    on_epoch_begin = function() rec(sprintf("epoch_begin %d", ctx$epoch)),
    on_train_begin = function() rec(sprintf("train_begin %s", ctx$training)),
    on_train_batch_begin = function() rec(sprintf("train_batch_begin %d.%d", ctx$epoch, ctx$iter)),
    on_train_batch_after_pred = function() rec("after_pred"),
    on_train_batch_after_loss = function() rec("after_loss"),
    on_train_batch_before_backward = function() rec("before_backward"),
    on_train_batch_before_step = function() rec("before_step"),
    on_train_batch_after_step = function() rec("after_step"),
    on_train_batch_end = function() rec(sprintf("train_batch_end %d.%d", ctx$epoch, ctx$iter)),
    on_train_end = function() rec("train_end"),
    on_valid_begin = function() rec(sprintf("valid_begin %s", ctx$training)),
    on_valid_batch_begin = function() rec(sprintf("valid_batch_begin %d.%d", ctx$epoch, ctx$iter)),
    on_valid_batch_after_pred = function() rec("valid_after_pred"),
    on_valid_batch_after_loss = function() rec("valid_after_loss"),
    on_valid_batch_end = function() rec("valid_batch_end"),
    on_valid_end = function() rec("valid_end"),
    on_epoch_end = function() rec(sprintf("epoch_end %d", ctx$epoch)),
    on_fit_end = function() rec("fit_end")
  )
  fitted <- py_setup(fx, torch) %>%
    fit(list(d$x, d$y), epochs = 2, valid_data = list(d$x[1:16, ], d$y[1:16]),
        callbacks = recorder(), verbose = FALSE, dataloader_options = list(batch_size = 32))
  train_batch <- function(e, i) {
    c(sprintf("train_batch_begin %d.%d", e, i), "after_pred", "after_loss", "before_backward",
      "before_step", "after_step", sprintf("train_batch_end %d.%d", e, i))
  }
  epoch <- function(e) {
    c(sprintf("epoch_begin %d", e), "train_begin TRUE", train_batch(e, 1), train_batch(e, 2), "train_end",
      "valid_begin FALSE", sprintf("valid_batch_begin %d.1", e), "valid_after_pred", "valid_after_loss",
      "valid_batch_end", "valid_end", sprintf("epoch_end %d", e))
  }
  expect_equal(calls, c("fit_begin", epoch(1), epoch(2), "fit_end"))
  expect_s3_class(fitted, "luz_module_fitted")
})

test_that("luz_callback() returns a generator with initialize's formals; self and ctx work", {
  fx <- luz_fixtures()
  torch <- py_torch()
  print_callback <- luz_callback(
    name = "print_callback",
    initialize = function(message, every = 1) {
      self$message <- message
      self$every <- every
    },
    on_train_batch_end = function() {
      if (ctx$iter %% self$every == 0) cat("Iteration ", ctx$iter, "\n")
    },
    on_epoch_end = function() {
      cat(self$message, "\n")
      self$seen_loss <- c(self$seen_loss, ctx$get_metric("loss", "train"))
      self$model_class <- class(ctx$model)[1]
    }
  )
  expect_equal(names(formals(print_callback)), c("message", "every"))
  cb <- print_callback(message = "Done!", every = 2)
  expect_s3_class(cb, c("print_callback", "LuzCallback", "R6"))
  d <- make_class_data(64)
  out <- capture.output(
    fitted <- py_setup(fx, torch) %>% fit(list(d$x, d$y), epochs = 2, callbacks = list(cb), verbose = FALSE)
  )
  expect_equal(out, rep(c("Iteration  2 ", "Done! "), 2))
  expect_equal(cb$seen_loss, vapply(fitted$records$metrics$train, function(r) r$loss, numeric(1)))
  expect_equal(cb$model_class, "luz_fixtures.Net")
  expect_error(print_callback(), "message")
})

test_that("weights order callbacks (stable for ties), Inf runs last", {
  fx <- luz_fixtures()
  torch <- py_torch()
  calls <- character()
  mk <- function(label, weight) {
    luz_callback(label, weight = weight, on_epoch_end = function() calls <<- c(calls, label))()
  }
  d <- make_class_data(32)
  py_setup(fx, torch) %>%
    fit(list(d$x, d$y), epochs = 1, verbose = FALSE,
        callbacks = list(mk("last", Inf), mk("a", 1), mk("b", 0), mk("c", 1), mk("first", -5)))
  expect_equal(calls, c("first", "b", "a", "c", "last"))
})

test_that("inheritance: super$ methods, inherited initialize and fields", {
  fx <- luz_fixtures()
  torch <- py_torch()
  base_cb <- luz_callback(
    "base_cb",
    initialize = function(prefix) {
      self$prefix <- prefix
      self$log <- character()
    },
    on_epoch_end = function() self$log <- c(self$log, paste(self$prefix, "base", ctx$epoch)),
    on_fit_end = function() self$log <- c(self$log, "base fit_end")
  )
  child_cb <- luz_callback(
    "child_cb",
    inherit = base_cb,
    on_epoch_end = function() {
      super$on_epoch_end()
      self$log <- c(self$log, paste("child", ctx$epoch))
    }
  )
  expect_equal(names(formals(child_cb)), "prefix")
  cb <- child_cb(prefix = ">")
  expect_s3_class(cb, c("child_cb", "base_cb", "LuzCallback"))
  d <- make_class_data(32)
  py_setup(fx, torch) %>% fit(list(d$x, d$y), epochs = 2, callbacks = list(cb), verbose = FALSE)
  expect_equal(cb$log, c("> base 1", "child 1", "> base 2", "child 2", "base fit_end"))
})

test_that("only the breakpoints an R callback defines are dispatched to R", {
  skip_if_no_engine()
  cb <- luz_callback("sparse", on_epoch_end = function() NULL, on_train_batch_end = function() NULL,
                     helper = function() "not a breakpoint", weight = 2)()
  adapter <- pyluz:::as_engine_callback(cb)
  expect_equal(sort(unlist(adapter$r_hooks)), c("on_epoch_end", "on_train_batch_end"))
  expect_equal(adapter$weight, 2)
  expect_false(reticulate::py_has_attr(adapter, "on_train_batch_begin"))
  expect_false(reticulate::py_has_attr(adapter, "load_state_dict"))
  hooks <- reticulate::import("pyluz.callbacks.base")$HookTable(list(adapter))
  expect_length(hooks$hooks("on_train_batch_begin"), 0)
  expect_length(hooks$hooks("on_epoch_end"), 1)
  expect_equal(adapter$name, "sparse")
})

test_that("state_dict()/load_state_dict() defined in R are honoured", {
  skip_if_no_engine()
  counter <- luz_callback(
    "counter",
    initialize = function() self$count <- 0,
    on_epoch_end = function() self$count <- self$count + 1,
    state_dict = function() list(count = self$count, label = "epochs"),
    load_state_dict = function(state) self$count <- state$count
  )
  cb <- counter()
  adapter <- pyluz:::as_engine_callback(cb)
  adapter$on_epoch_end()
  adapter$on_epoch_end()
  state <- adapter$state_dict()
  expect_equal(state, list(count = 2, label = "epochs"))
  other <- counter()
  pyluz:::as_engine_callback(other)$load_state_dict(state)
  expect_equal(other$count, 2)
})

test_that("callbacks can call custom breakpoints and log into the records", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(32)
  caller <- luz_callback("caller", on_epoch_end = function() ctx$call_callbacks("on_my_event"))
  listener <- luz_callback(
    "listener",
    on_my_event = function() ctx$log("custom", "train", ctx$epoch * 10)
  )
  fitted <- py_setup(fx, torch) %>%
    fit(list(d$x, d$y), epochs = 2, callbacks = list(caller(), listener()), verbose = FALSE)
  expect_equal(unlist(fitted$records$custom$train), c(10, 20))
})

test_that("uninitialized callbacks give luz's error", {
  fx <- luz_fixtures()
  torch <- py_torch()
  cb <- luz_callback("cb", on_epoch_end = function() NULL)
  d <- make_class_data(32)
  expect_error(
    py_setup(fx, torch) %>% fit(list(d$x, d$y), epochs = 1, callbacks = list(cb), verbose = FALSE),
    "forgot to initialize"
  )
})

test_that("private and active members work as in R6", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(32)
  cb <- luz_callback(
    "with_private",
    on_epoch_end = function() {
      private$n <- private$n + 1
      self$seen <- c(self$seen, self$label)
    },
    private = list(n = 0),
    active = list(label = function() paste0("epoch-", private$n))
  )()
  py_setup(fx, torch) %>% fit(list(d$x, d$y), epochs = 2, callbacks = list(cb), verbose = FALSE)
  expect_equal(cb$seen, c("epoch-1", "epoch-2"))
})
