# Metrics: built-ins against R computations, custom R metrics against manual computations and
# the engine's built-ins, inheritance, metric sets, one fresh instance per epoch and phase.

metric_value <- function(gen, preds, target) {
  m <- gen$new()
  m$update(preds, target)
  m$compute()
}

auc_exact <- function(score, label) {
  r <- rank(score)
  n1 <- sum(label == 1)
  n0 <- sum(label == 0)
  (sum(r[label == 1]) - n1 * (n1 + 1) / 2) / (n1 * n0)
}

test_that("built-in metrics agree with R computations", {
  skip_if_no_engine()
  set.seed(10)
  n <- 200
  scores <- matrix(rnorm(n * 3), n, 3)
  classes <- sample(1:3, n, replace = TRUE)
  preds <- torch_tensor(scores)
  target <- torch_tensor(classes)
  expect_equal(metric_value(luz_metric_accuracy(), preds, target), mean(max.col(scores) == classes))

  prob <- runif(n)
  label <- as.numeric(runif(n) < prob)
  p <- torch_tensor(prob)
  y <- torch_tensor(label)
  expect_equal(metric_value(luz_metric_binary_accuracy(), p, y), mean((prob > 0.5) == label), tolerance = 1e-7)
  expect_equal(metric_value(luz_metric_binary_accuracy(threshold = 0.3), p, y), mean((prob > 0.3) == label),
               tolerance = 1e-7)
  logits <- torch_tensor(qlogis(prob))
  expect_equal(metric_value(luz_metric_binary_accuracy_with_logits(), logits, y),
               mean((prob > 0.5) == label), tolerance = 1e-7)

  yhat <- rnorm(n)
  yreg <- yhat + rnorm(n)
  a <- torch_tensor(yhat)
  b <- torch_tensor(yreg)
  expect_equal(metric_value(luz_metric_mae(), a, b), mean(abs(yhat - yreg)), tolerance = 1e-6)
  expect_equal(metric_value(luz_metric_mse(), a, b), mean((yhat - yreg)^2), tolerance = 1e-6)
  expect_equal(metric_value(luz_metric_rmse(), a, b), sqrt(mean((yhat - yreg)^2)), tolerance = 1e-6)

  # AUROC on a grid of thresholds: within the grid's error of the exact value
  expect_equal(metric_value(luz_metric_binary_auroc(), p, y), auc_exact(prob, label), tolerance = 1e-2)
  expect_equal(metric_value(luz_metric_binary_auroc(num_thresholds = 1000), p, y), auc_exact(prob, label),
               tolerance = 2e-3)
  expect_equal(metric_value(luz_metric_binary_auroc(from_logits = TRUE), logits, y), auc_exact(prob, label),
               tolerance = 1e-2)
  probs3 <- exp(scores) / rowSums(exp(scores))
  per_class <- vapply(1:3, function(k) auc_exact(probs3[, k], as.numeric(classes == k)), 1)
  expect_equal(metric_value(luz_metric_multiclass_auroc(average = "macro", from_logits = TRUE), preds, target),
               mean(per_class), tolerance = 1e-2)
  none <- metric_value(luz_metric_multiclass_auroc(average = "none", from_logits = TRUE), preds, target)
  expect_equal(unlist(none), per_class, tolerance = 1e-2)
  expect_error(luz_metric_multiclass_auroc(average = "median")$new(), "should be one of")
})

test_that("built-ins go to the engine as its own metrics, with 1-based classes", {
  skip_if_no_engine()
  acc <- pyluz:::as_engine_metric(luz_metric_accuracy())
  expect_true(inherits(acc, "pyluz.metrics.classification.Accuracy"))
  expect_equal(acc$index_base, 1L)
  auc <- pyluz:::as_engine_metric(luz_metric_multiclass_auroc(num_thresholds = 50, average = "weighted"))
  expect_equal(auc$index_base, 1L)
  expect_equal(auc$average, "weighted")
  expect_true(inherits(pyluz:::as_engine_metric(luz_metric_accuracy), "pyluz.metrics.classification.Accuracy"))
  expect_error(setup(function() NULL, loss = function(a, b) NULL, optimizer = optim_adam, metrics = list(1)),
               "luz_metric_generator")
})

regression_model <- function(metrics) {
  setup(nn_linear, loss = nn_mse_loss(), optimizer = optim_sgd, metrics = metrics) %>%
    set_hparams(in_features = 3, out_features = 1) %>%
    set_opt_hparams(lr = 0.05)
}

regression_data <- function(n = 80) {
  set.seed(3)
  x <- matrix(rnorm(n * 3), n, 3)
  y <- matrix(x %*% c(1, -2, 0.5) + rnorm(n, sd = 0.1), n, 1)
  list(x = x, y = y)
}

test_that("a custom luz_metric gives the same records as the built-in and as R", {
  skip_if_no_engine()
  d <- regression_data()
  my_mae <- luz_metric(
    name = "my_mae",
    abbrev = "MyMAE",
    initialize = function() {
      self$sum <- 0
      self$n <- 0
    },
    update = function(preds, target) {
      self$sum <- self$sum + torch_sum(torch_abs(preds - target))$item()
      self$n <- self$n + target$numel()
    },
    compute = function() self$sum / self$n
  )
  torch_manual_seed(5)
  fitted <- regression_model(list(my_mae(), luz_metric_mae())) %>%
    fit(list(d$x, d$y), epochs = 3, valid_data = list(d$x[1:20, ], d$y[1:20, , drop = FALSE]),
        verbose = FALSE, dataloader_options = list(batch_size = 16))
  for (set in c("train", "valid")) {
    for (rec in fitted$records$metrics[[set]]) expect_equal(rec$mymae, rec$mae, tolerance = 1e-6)
  }
  preds <- as_array(predict(fitted, d$x[1:20, ]))
  expect_equal(fitted$records$metrics$valid[[3]]$mymae, mean(abs(preds - d$y[1:20, ])), tolerance = 1e-5)
})

test_that("update_every keeps a sum metric's values and changes a mean of batch means, as documented", {
  skip_if_no_engine()
  d <- regression_data()
  calls <- new.env()
  calls$rows <- integer()
  sum_mae <- function(update_every) luz_metric(
    abbrev = "SumMAE",
    initialize = function() {
      self$sum <- torch_zeros(1)
      self$n <- 0
    },
    update = function(preds, target) {
      calls$rows <- c(calls$rows, target$size(1))
      self$sum <- self$sum + torch_sum(torch_abs(preds - target))
      self$n <- self$n + target$numel()
    },
    compute = function() self$sum$item() / self$n,
    update_every = update_every
  )
  mean_of_means <- function(update_every) luz_metric(
    abbrev = "MeanMAE",
    initialize = function() self$means <- numeric(),
    update = function(preds, target) {
      self$means <- c(self$means, torch_mean(torch_abs(preds - target))$item())
    },
    compute = function() mean(self$means),
    update_every = update_every
  )
  run <- function(k) {
    torch_manual_seed(5)
    regression_model(list(sum_mae(k)(), mean_of_means(k)(), luz_metric_mae())) %>%
      fit(list(d$x, d$y), epochs = 2, valid_data = list(d$x[1:20, ], d$y[1:20, , drop = FALSE]),
          verbose = FALSE, dataloader_options = list(batch_size = 12))
  }
  plain <- run(1)
  expect_equal(calls$rows[1:8], c(rep(12, 6), 12, 8))  # epoch 1: 6 training batches (the last short one dropped), 2 valid
  calls$rows <- integer()
  grouped <- run(4)
  # groups of 4 batches; compute() hands over the rest (training: 2 batches; validation: both)
  expect_equal(calls$rows[1:3], c(48, 24, 20))
  for (set in c("train", "valid")) {
    for (i in 1:2) {
      a <- plain$records$metrics[[set]][[i]]
      b <- grouped$records$metrics[[set]][[i]]
      expect_equal(b$summae, a$summae, tolerance = 1e-6)  # a sum over samples: luz's value
      expect_equal(b$summae, b$mae, tolerance = 1e-6)
    }
  }
  # the mean of batch means weighs a group of 3 batches (or a short last batch) as one mean
  expect_false(isTRUE(all.equal(grouped$records$metrics$train[[1]]$meanmae,
                                plain$records$metrics$train[[1]]$meanmae, tolerance = 1e-6)))
  expect_error(luz_metric(update = function(preds, target) NULL, update_every = 0), "update_every")
  child <- luz_metric(inherit = sum_mae(4), name = "child")
  expect_equal(attr(child, "update_every"), 4L)
})

test_that("inherit and super$ work, also from built-in metrics", {
  skip_if_no_engine()
  d <- regression_data()
  rmse2 <- luz_metric(name = "rmse2", abbrev = "RMSE2", inherit = luz_metric_mse,
                      compute = function() sqrt(super$compute()))
  half_mae <- luz_metric(name = "half_mae", abbrev = "HalfMAE", inherit = luz_metric_mae,
                         update = function(preds, target) super$update(preds / 2, target / 2))
  expect_false(inherits(pyluz:::as_engine_metric(rmse2()), "pyluz.metrics.regression.MSE"))
  torch_manual_seed(6)
  fitted <- regression_model(list(rmse2(), luz_metric_rmse(), half_mae(), luz_metric_mae())) %>%
    fit(list(d$x, d$y), epochs = 2, verbose = FALSE)
  for (rec in fitted$records$metrics$train) {
    expect_equal(rec$rmse2, rec$rmse, tolerance = 1e-6)
    expect_equal(rec$halfmae, rec$mae / 2, tolerance = 1e-6)
  }

  base <- luz_metric(name = "base_count", abbrev = "Count",
                     initialize = function(scale = 1) {
                       self$scale <- scale
                       self$n <- 0
                     },
                     update = function(preds, target) self$n <- self$n + preds$shape[1],
                     compute = function() self$n * self$scale)
  child <- luz_metric(name = "child_count", abbrev = "Twice", inherit = base,
                      update = function(preds, target) {
                        super$update(preds, target)
                        super$update(preds, target)
                      })
  expect_equal(names(formals(child)), "scale")
  fitted <- regression_model(list(child(scale = 0.5))) %>%
    fit(list(d$x, d$y), epochs = 1, verbose = FALSE, dataloader_options = list(batch_size = 16))
  expect_equal(fitted$records$metrics$train[[1]]$twice, 80)  # 5 batches of 16, counted twice, halved
})

test_that("a fresh R metric instance per epoch and phase; metrics see ctx", {
  skip_if_no_engine()
  d <- regression_data()
  created <- 0
  phases <- character()
  counting <- luz_metric(
    abbrev = "Batches",
    initialize = function() {
      created <<- created + 1
      self$n <- 0
    },
    update = function(preds, target) {
      self$n <- self$n + 1
      phases <<- c(phases, if (ctx$training) "train" else "valid")
    },
    compute = function() self$n
  )
  fitted <- regression_model(list(counting())) %>%
    fit(list(d$x, d$y), epochs = 3, valid_data = 0.25, verbose = FALSE,
        dataloader_options = list(batch_size = 20))
  expect_equal(created, 6)
  expect_equal(vapply(fitted$records$metrics$train, function(r) r$batches, 1), c(3, 3, 3))
  expect_equal(vapply(fitted$records$metrics$valid, function(r) r$batches, 1), c(1, 1, 1))
  expect_equal(phases, rep(c("train", "train", "train", "valid"), 3))
})

test_that("luz_metric_set: metrics per phase", {
  skip_if_no_engine()
  d <- regression_data()
  ms <- luz_metric_set(metrics = luz_metric_mae(), train_metrics = list(luz_metric_mse()),
                       valid_metrics = luz_metric_rmse())
  expect_s3_class(ms, "luz_metric_set")
  expect_output(print(ms), "valid_metrics")
  fitted <- regression_model(ms) %>%
    fit(list(d$x, d$y), epochs = 1, valid_data = 0.25, verbose = FALSE)
  expect_equal(names(fitted$records$metrics$train[[1]]), c("loss", "mae", "mse"))
  expect_equal(names(fitted$records$metrics$valid[[1]]), c("loss", "mae", "rmse"))
  expect_error(luz_metric_set(metrics = list("mae")), "luz_metric_generator")
})
