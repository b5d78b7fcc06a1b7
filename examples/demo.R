# pyluz from R: luz's pipe API on the Python engine.
# Trains a small MLP on scikit-learn's bundled digits data (8x8 images, 10 classes; no download),
# with a validation split, accuracy and progress output, then prints the fitted model and the
# evaluation on held-out data.
#
# Run from the repository root:  RETICULATE_PYTHON=.venv/bin/python Rscript examples/demo.R
# (`make demo` does this.)

library(pyluz)

# -- data: sklearn's digits, 1797 images as 64 pixel values in 0..16 ----------------------------
digits <- reticulate::import("sklearn.datasets")$load_digits()
x <- digits$data / 16                  # R double matrix -> float32 tensors
y <- as.integer(digits$target) + 1L    # classes 1..10, as R torch expects

set.seed(1)
test_idx <- sample(nrow(x), 360)
x_train <- x[-test_idx, ]
y_train <- y[-test_idx]
x_test <- x[test_idx, ]
y_test <- y[test_idx]

# -- model: an nn_module written in R -------------------------------------------------------------
mlp <- nn_module(
  "mlp",
  initialize = function(n_in, hidden, n_out) {
    self$fc1 <- nn_linear(n_in, hidden)
    self$dropout <- nn_dropout(0.1)
    self$fc2 <- nn_linear(hidden, n_out)
  },
  forward = function(x) {
    x %>%
      self$fc1() %>%
      nnf_relu() %>%
      self$dropout() %>%
      self$fc2()
  }
)

# -- a custom callback: remember the best validation accuracy --------------------------------------
best_acc <- luz_callback(
  "best_acc",
  initialize = function() self$best <- 0,
  on_epoch_end = function() {
    self$best <- max(self$best, ctx$get_metric("acc", "valid"))
  }
)
tracker <- best_acc()

torch_manual_seed(1)
fitted <- mlp %>%
  setup(
    loss = nn_cross_entropy_loss(),
    optimizer = optim_adam,
    metrics = list(luz_metric_accuracy())
  ) %>%
  set_hparams(n_in = 64, hidden = 64, n_out = 10) %>%
  set_opt_hparams(lr = 0.01) %>%
  fit(
    list(x_train, y_train),
    epochs = 15,
    valid_data = 0.2,
    callbacks = list(tracker, luz_callback_early_stopping(monitor = "valid_acc", mode = "max", patience = 4)),
    verbose = TRUE,
    dataloader_options = list(batch_size = 64)
  )

print(fitted)

metrics <- get_metrics(fitted)
valid_acc <- tail(metrics$value[metrics$set == "valid" & metrics$metric == "acc"], 1)
cat(sprintf("\nLast validation accuracy: %.4f (best %.4f)\n", valid_acc, tracker$best))

evaluation <- evaluate(fitted, list(x_test, y_test))
print(evaluation)

pred <- predict(fitted, x_test)
test_acc <- mean(as_array(torch_argmax(pred, dim = 2)) == y_test)
cat(sprintf("Test accuracy from predict(): %.4f\n", test_acc))

stopifnot(valid_acc >= 0.95, test_acc >= 0.95)
