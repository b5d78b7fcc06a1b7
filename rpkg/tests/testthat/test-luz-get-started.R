# luz's "Get started" vignette (vignettes/get-started.Rmd with its child documents metrics.Rmd,
# evaluate.Rmd and callbacks.Rmd), run verbatim. Changes: `library(pyluz)` instead of
# `library(luz); library(torch)`, `torch::fn` written `fn`, the `...` placeholders of the
# vignette filled in, and small random 28x28 images instead of MNIST (no downloads).

test_that("luz's get started example runs verbatim", {
  skip_if_no_engine()
  library(pyluz)

  # -- data (instead of torchvision's MNIST) ---------------------------------------------------
  torch_manual_seed(1)
  train_ds <- tensor_dataset(torch_randn(64, 1, 28, 28), torch_randint(1, 11, size = 64)$to(dtype = torch_long()))
  test_ds <- tensor_dataset(torch_randn(32, 1, 28, 28), torch_randint(1, 11, size = 32)$to(dtype = torch_long()))
  train_dl <- dataloader(train_ds, batch_size = 32, shuffle = TRUE)
  test_dl <- dataloader(test_ds, batch_size = 32)
  valid_dl <- test_dl

  # -- Training a nn_module (verbatim) ---------------------------------------------------------
  net <- nn_module(
    "Net",
    initialize = function(num_class) {
      self$conv1 <- nn_conv2d(1, 32, 3, 1)
      self$conv2 <- nn_conv2d(32, 64, 3, 1)
      self$dropout1 <- nn_dropout2d(0.25)
      self$dropout2 <- nn_dropout2d(0.5)
      self$fc1 <- nn_linear(9216, 128)
      self$fc2 <- nn_linear(128, num_class)
    },
    forward = function(x) {
      x <- self$conv1(x)
      x <- nnf_relu(x)
      x <- self$conv2(x)
      x <- nnf_relu(x)
      x <- nnf_max_pool2d(x, 2)
      x <- self$dropout1(x)
      x <- torch_flatten(x, start_dim = 2)
      x <- self$fc1(x)
      x <- nnf_relu(x)
      x <- self$dropout2(x)
      x <- self$fc2(x)
      x
    }
  )

  fitted <- net %>%
    setup(
      loss = nn_cross_entropy_loss(),
      optimizer = optim_adam,
      metrics = list(
        luz_metric_accuracy
      )
    ) %>%
    set_hparams(num_class = 10) %>%
    set_opt_hparams(lr = 0.003) %>%
    fit(train_dl, epochs = 10, valid_data = test_dl)

  predictions <- predict(fitted, test_dl)

  expect_s3_class(fitted, "luz_module_fitted")
  expect_equal(predictions$shape, c(32, 10))
  expect_equal(length(fitted$records$metrics$train), 10)
  expect_equal(names(fitted$records$metrics$valid[[10]]), c("loss", "acc"))
  # the built-in accuracy (1-based classes) against one computed in R from the predictions
  pred_class <- as_array(torch_argmax(predictions, dim = 2))
  target <- as_array(test_ds$tensors[[2]])
  expect_equal(fitted$records$metrics$valid[[10]]$acc, mean(pred_class == target), tolerance = 1e-6)

  # -- Metrics (man/rmd/metrics.Rmd, verbatim) -------------------------------------------------
  luz_metric_accuracy <- luz_metric(
    # An abbreviation to be shown in progress bars, or
    # when printing progress
    abbrev = "Acc",
    # Initial setup for the metric. Metrics are initialized
    # every epoch, for both training and validation
    initialize = function() {
      self$correct <- 0
      self$total <- 0
    },
    # Run at every training or validation step and updates
    # the internal state. The update function takes `preds`
    # and `target` as parameters.
    update = function(preds, target) {
      pred <- torch_argmax(preds, dim = 2)
      self$correct <- self$correct + (pred == target)$
        to(dtype = torch_float())$
        sum()$
        item()
      self$total <- self$total + pred$numel()
    },
    # Use the internal state to query the metric value
    compute = function() {
      self$correct/self$total
    }
  )

  fitted <- net %>%
    setup(
      loss = nn_cross_entropy_loss(),
      optimizer = optim_adam,
      metrics = list(
        luz_metric_accuracy
      )
    ) %>%
    set_hparams(num_class = 10) %>%
    set_opt_hparams(lr = 0.003) %>%
    fit(train_dl, epochs = 2, valid_data = test_dl)

  # -- Evaluate (man/rmd/evaluate.Rmd, verbatim) -----------------------------------------------
  evaluation <- fitted %>% evaluate(data = valid_dl)
  metrics <- get_metrics(evaluation)
  out <- capture.output(print(evaluation))

  expect_equal(metrics$metric, c("loss", "acc"))
  expect_equal(out[1], "A `luz_module_evaluation`")
  expect_match(out[3], "^loss: [0-9.]+$")
  # the custom accuracy (R metric) on the final model == the last validation epoch, and == the
  # built-in metric computed by the engine
  expect_equal(metrics$value, unlist(fitted$records$metrics$valid[[2]]), tolerance = 1e-6,
               ignore_attr = TRUE)
  builtin <- get_metrics(evaluate(fitted, valid_dl, metrics = list(pyluz::luz_metric_accuracy())))
  expect_equal(builtin$value, metrics$value, tolerance = 1e-6)
  expect_equal(nrow(get_metrics(fitted)), 2 * 2 * 2)

  # -- Customizing with callbacks (man/rmd/callbacks.Rmd, verbatim) ----------------------------
  print_callback <- luz_callback(
    name = "print_callback",
    initialize = function(message) {
      self$message <- message
    },
    on_train_batch_end = function() {
      cat("Iteration ", ctx$iter, "\n")
    },
    on_epoch_end = function() {
      cat(self$message, "\n")
    }
  )

  printed <- capture.output(
    fitted <- net %>%
      setup(
        loss = nn_cross_entropy_loss(),
        optimizer = optim_adam,
        metrics = list(luz_metric_accuracy)
      ) %>%
      set_hparams(num_class = 10) %>%
      fit(train_dl, epochs = 2, callbacks = list(
        print_callback(message = "Done!")
      ))
  )
  expect_equal(printed, rep(c("Iteration  1 ", "Iteration  2 ", "Done! "), 2))
})
