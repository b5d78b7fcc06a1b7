# luz's fit() builds the model before it evaluates `data` and `valid_data` (R's lazy arguments,
# `valid_data` first), so random numbers drawn while the data is made come after the initial
# weights. The same seed gives luz's starting weights whatever the data arguments draw.

order_net <- nn_module(
  initialize = function() self$fc <- nn_linear(4, 3),
  forward = function(x) self$fc(x)
)

# The weights at on_fit_begin (before any step), and a fit whose data arguments are `...`.
first_weights <- function(module, ...) {
  w <- NULL
  spy <- luz_callback(on_fit_begin = function() {
    w <<- lapply(ctx$model$state_dict(), function(t) t$clone())
  })
  module %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_sgd) %>%
    set_opt_hparams(lr = 0.1) %>%
    fit(..., epochs = 1, verbose = FALSE, callbacks = list(spy()))
  w
}

test_that("data drawn from torch's RNG inside fit()'s call leaves luz's initial weights", {
  skip_if_no_engine()
  torch_manual_seed(11)
  got <- first_weights(order_net, list(torch_randn(64, 4), torch_randint(1, 4, 64, dtype = torch_long())),
                       valid_data = list(torch_randn(16, 4), torch_randint(1, 4, 16, dtype = torch_long())))
  torch_manual_seed(11)
  expect_state_dicts_equal(got, order_net()$state_dict())
})

test_that("datasets are made after the model, `valid_data` before `data`, as luz evaluates them", {
  skip_if_no_engine()
  made <- character()
  drawn <- list()
  rows <- dataset(
    initialize = function(name, n) {
      made <<- c(made, name)
      self$x <- torch_randn(n, 4)  # torch's RNG, as a dataset that simulates its data
      drawn[[name]] <<- self$x
      self$y <- torch_randint(1, 4, n, dtype = torch_long())
    },
    .getitem = function(i) list(self$x[i, ], self$y[i]),
    .length = function() self$x$size(1)
  )
  torch_manual_seed(12)
  got <- first_weights(order_net, rows("data", 64), valid_data = rows("valid_data", 16),
                       dataloader_options = list(batch_size = 16))
  expect_equal(made, c("valid_data", "data"))
  torch_manual_seed(12)
  expect_state_dicts_equal(got, order_net()$state_dict())
  valid_x <- torch_randn(16, 4)
  torch_randint(1, 4, 16, dtype = torch_long())
  expect_true(torch_equal(drawn$valid_data, valid_x))
  expect_true(torch_equal(drawn$data, torch_randn(64, 4)))
})

test_that("R's RNG: a module drawing R numbers in initialize() gets them before the data does", {
  skip_if_no_engine()
  r_init_net <- nn_module(
    initialize = function() {
      self$fc <- nn_linear(4, 3)
      with_no_grad(self$fc$weight$copy_(torch_tensor(matrix(rnorm(12), 3, 4))))
    },
    forward = function(x) self$fc(x)
  )
  set.seed(13)
  torch_manual_seed(13)
  got <- first_weights(r_init_net, list(matrix(rnorm(256), 64, 4), sample(1:3, 64, replace = TRUE)))
  set.seed(13)
  torch_manual_seed(13)
  expect_state_dicts_equal(got, r_init_net()$state_dict())
})

test_that("a held-out fraction is split after the model is built", {
  skip_if_no_engine()
  x <- matrix(rnorm(256), 64, 4)
  y <- sample(1:3, 64, replace = TRUE)
  torch_manual_seed(14)
  got <- first_weights(order_net, list(x, y), valid_data = 0.25)
  torch_manual_seed(14)
  expect_state_dicts_equal(got, order_net()$state_dict())
})

test_that("errors in the data arguments still name them, with their class", {
  skip_if_no_engine()
  model <- order_net %>% setup(loss = nn_cross_entropy_loss(), optimizer = optim_sgd)
  expect_error(fit(model, data.frame(a = 1), verbose = FALSE), "for `data`", class = "value_error")
  expect_error(fit(model, list(matrix(1, 64, 4), rep(1L, 64)), valid_data = "a", verbose = FALSE),
               "for `valid_data`", class = "value_error")
  err <- tryCatch(fit(model, stop("no data here"), verbose = FALSE), error = function(e) e)
  expect_identical(conditionMessage(err), "no data here")
  expect_error(lr_finder(model, data.frame(a = 1)), "for `data`", class = "value_error")
})

test_that("a held-out fraction takes luz's rows: drawn with sample.int() from R's RNG", {
  skip_if_no_engine()
  x <- matrix(seq_len(64 * 4) / 100, 64, 4)
  y <- rep(1:3, length.out = 64)
  seen <- list()
  valid_rows <- luz_callback(on_valid_batch_begin = function() {
    seen[[length(seen) + 1]] <<- as_array(ctx$input)
  })
  set.seed(15)
  order_net %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_sgd) %>%
    fit(list(x, y), epochs = 1, valid_data = 0.25, verbose = FALSE, callbacks = list(valid_rows()),
        dataloader_options = list(batch_size = 8))
  after_fit <- runif(1)
  set.seed(15)
  id_valid <- sample.int(64, size = 64 * 0.25)  # what luz draws
  expect_equal(do.call(rbind, seen), x[id_valid, ], tolerance = 1e-6)
  expect_identical(after_fit, runif(1))  # and R's RNG is where luz leaves it
})
