# ctx$<field> from R callbacks: the kept copies (rpkg/R/context.R) always equal what a fresh
# conversion of the engine's value gives, through writes, logs and replaced records; luz's
# custom-backward idiom (`ctx$loss_grad <- ...` under `with_enable_grad()`) reaches the backward.

fresh <- function(ctx, name) reticulate::py_to_r(reticulate::py_get_attr(ctx, name))

same_tensor <- function(a, b) {
  inherits(a, "torch_tensor") && identical(class(a), class(b)) &&
    isTRUE(all.equal(as_array(a$detach()), as_array(b$detach())))
}

test_that("kept ctx fields equal fresh conversions: iter, epoch, loss, pred, target, opt, records", {
  skip_if_no_engine()
  d <- make_class_data(64)
  problems <- character()
  check <- function(ctx, where) {
    bad <- function(what) problems <<- c(problems, paste(where, what))
    if (!identical(ctx$iter, fresh(ctx, "iter"))) bad("iter")
    if (!identical(ctx$epoch, fresh(ctx, "epoch"))) bad("epoch")
    if (!identical(ctx$records, fresh(ctx, "records"))) bad("records")
    loss <- ctx$loss
    want <- fresh(ctx, "loss")
    if (!identical(names(loss), names(want)) || !all(mapply(same_tensor, loss, want))) bad("loss")
    for (f in c("pred", "target")) {
      got <- do.call(`$`, list(ctx, f))
      if (!same_tensor(got, fresh(ctx, f))) bad(f)
    }
    if (!identical(reticulate::py_id(ctx$opt), reticulate::py_id(fresh(ctx, "opt")))) bad("opt")
  }
  probe <- luz_callback(
    "probe",
    on_train_batch_end = function() {
      check(ctx, sprintf("train %d.%d", ctx$epoch, ctx$iter))
      ctx$log("seen", "train", ctx$iter)               # a new `what`, appended every batch
      check(ctx, "after log")
      ctx$loss <- list(opt = torch_tensor(42))         # a write: the next read sees it
      check(ctx, "after write")
      if (as_array(ctx$loss$opt) != 42) problems <<- c(problems, "write lost")
    },
    on_valid_batch_end = function() check(ctx, "valid"),
    on_epoch_end = function() {
      check(ctx, "epoch end")
      ctx$log("extra", "valid", list(a = 1, b = NULL), index = ctx$epoch + 1L)  # padded with {}
      check(ctx, "after padded log")
      if (ctx$epoch == 2) {
        ctx$unsafe_set_records(list(metrics = list(train = list(list(loss = 1)), valid = list())))
        check(ctx, "after set_records")
      }
    }
  )
  torch_manual_seed(1)
  fitted <- nn_linear %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_sgd, metrics = list(luz_metric_accuracy())) %>%
    set_hparams(in_features = 4, out_features = 3) %>%
    set_opt_hparams(lr = 0.05) %>%
    fit(list(d$x, d$y + 1L), epochs = 3, valid_data = 0.25, callbacks = list(probe()), verbose = FALSE,
        dataloader_options = list(batch_size = 16))
  expect_identical(problems, character())
  expect_length(fitted$records$metrics$train, 3)
})

test_that("ctx$loss_grad <- ... under with_enable_grad() changes the gradients, as in luz", {
  skip_if_no_engine()
  set.seed(2)
  x <- matrix(rnorm(64), 16, 4)
  y <- matrix(rnorm(16), 16, 1)
  run <- function(lr, callbacks = NULL) {
    torch_manual_seed(3)
    fitted <- nn_linear %>%
      setup(loss = nn_mse_loss(), optimizer = optim_sgd) %>%
      set_hparams(in_features = 4, out_features = 1) %>%
      set_opt_hparams(lr = lr) %>%
      fit(list(x, y), epochs = 2, callbacks = callbacks, verbose = FALSE,
          dataloader_options = list(batch_size = 8))
    as_array(fitted$model$weight$detach())
  }
  double_loss <- luz_callback(
    "double_loss",
    on_train_batch_before_backward = function() {
      loss <- ctx$loss_grad                             # read through the kept copies first
      with_enable_grad(ctx$loss_grad <- loss * 2)
      if (!isTRUE(ctx$loss_grad$requires_grad)) stop("the new loss_grad lost its graph")
    }
  )
  # plain SGD: twice the loss is twice the learning rate
  expect_equal(run(0.05, list(double_loss())), run(0.1), tolerance = 1e-6)
  expect_false(isTRUE(all.equal(run(0.05), run(0.1))))
  # without with_enable_grad() the callback runs without gradients, as in luz: backward fails
  no_grad <- luz_callback(on_train_batch_before_backward = function() ctx$loss_grad <- ctx$loss_grad * 2)
  expect_error(run(0.05, list(no_grad())), "does not require grad")
})

test_that("a kept dict field keeps its NULL items when only the tensors change", {
  skip_if_no_engine()
  d <- make_class_data(32)
  seen <- list()
  writer <- luz_callback(
    "writer",
    on_train_batch_end = function() {
      for (v in c(1, 2)) {
        ctx$loss <- list(opt = torch_tensor(v), none = NULL)   # the same keys: items fetched one by one
        got <- ctx$loss
        seen[[length(seen) + 1L]] <<- list(names = names(got), opt = as_array(got$opt),
                                           none = is.null(got$none), fresh = names(fresh(ctx, "loss")))
      }
    }
  )
  torch_manual_seed(1)
  nn_linear %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_sgd) %>%
    set_hparams(in_features = 4, out_features = 3) %>%
    set_opt_hparams(lr = 0.05) %>%
    fit(list(d$x, d$y + 1L), epochs = 1, callbacks = list(writer()), verbose = FALSE,
        dataloader_options = list(batch_size = 16))
  expect_length(seen, 4)
  for (s in seen) {
    expect_identical(s$names, c("opt", "none"))
    expect_identical(s$names, s$fresh)
    expect_true(s$none)
  }
  expect_equal(vapply(seen, function(s) s$opt, numeric(1)), c(1, 2, 1, 2))
})

test_that("ctx tensors made by the C path are reticulate's objects, and own one reference each", {
  skip_if_no_engine()
  d <- make_class_data(64)
  weakref <- reticulate::import("weakref", convert = FALSE)
  seen <- new.env()
  probe <- luz_callback(
    "probe",
    on_train_batch_end = function() {
      if (ctx$iter > 3) return()
      generic <- reticulate::py_get_attr(ctx, "pred")       # reticulate's own wrapping
      mine <- ctx$pred                                      # the type is known from batch 2 on
      seen$class_ok <- c(seen$class_ok, identical(class(mine), class(generic)))
      seen$same_object <- c(seen$same_object, reticulate::py_id(mine) == reticulate::py_id(generic))
      seen$convert <- c(seen$convert, identical(get("convert", envir = mine), get("convert", envir = generic)))
      seen$values_ok <- c(seen$values_ok, torch_equal(mine$detach(), generic$detach()))
      loss <- ctx$loss[[1]]
      seen$loss_class <- c(seen$loss_class, identical(class(loss), class(reticulate::py_get_attr(ctx, "loss")$opt)))
      # each wrapper the C path makes owns one reference, dropped when R frees it
      held <- references_held(generic, function() .Call(pyluz:::C_py_attr, ctx, "pred", pyluz:::.py_classes), 4)
      seen$held <- c(seen$held, held[1])
      seen$after_gc <- c(seen$after_gc, held[2])
      seen$last <- weakref$ref(generic)
    }
  )
  nn_linear %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_sgd) %>%
    set_hparams(in_features = 4, out_features = 3) %>%
    set_opt_hparams(lr = 0.1) %>%
    fit(list(d$x, d$y + 1L), epochs = 1, callbacks = list(probe()), verbose = FALSE,
        dataloader_options = list(batch_size = 16))
  expect_equal(seen$class_ok, rep(TRUE, 3))
  expect_equal(seen$same_object, rep(TRUE, 3))
  expect_equal(seen$convert, rep(TRUE, 3))
  expect_equal(seen$values_ok, rep(TRUE, 3))
  expect_equal(seen$loss_class, rep(TRUE, 3))
  expect_equal(seen$held, rep(4, 3))
  expect_equal(seen$after_gc, rep(0, 3))
  invisible(gc())
  reticulate::py_run_string("import gc; gc.collect()")
  dead <- reticulate::py_eval("lambda r: r() is None", convert = FALSE)
  expect_true(reticulate::py_to_r(reticulate::py_call(dead, seen$last)))          # nothing kept the last batch's pred
})

test_that("a Python error in the C path returns NULL, and reticulate's path then raises it", {
  skip_if_no_engine()
  pyluz:::rt_bind()
  py <- reticulate::py_run_string("
class Boom:
    @property
    def pred(self):
        raise ValueError('no pred here')
boom = Boom()
", local = TRUE, convert = FALSE)
  expect_null(.Call(pyluz:::C_py_attr, py$boom, "pred", pyluz:::.py_classes))
  expect_null(.Call(pyluz:::C_py_item, py$boom, "pred", pyluz:::.py_classes))   # not subscriptable
  expect_null(.Call(pyluz:::C_py_len, py$boom))                                 # no len()
  expect_error(pyluz:::.rt$attr(py$boom, "pred", FALSE), "no pred here")
  expect_null(.Call(pyluz:::C_py_attr, "not a Python object", "pred", pyluz:::.py_classes))
})
