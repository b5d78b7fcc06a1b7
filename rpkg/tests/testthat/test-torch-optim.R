test_that("optimizers accept model$parameters and can be passed uncalled", {
  skip_if_no_torch()
  model <- nn_linear(2, 1)
  for (opt_fn in list(optim_adam, optim_adamw, optim_sgd, optim_rmsprop, optim_adagrad)) {
    opt <- opt_fn(model$parameters, lr = 0.01)
    expect_equal(opt$param_groups[[1]]$lr, 0.01)
  }
  opt <- optim_adam(model$parameters)
  expect_equal(opt$param_groups[[1]]$betas, list(0.9, 0.999))
  # param groups
  opt <- optim_sgd(list(list(params = model$parameters, lr = 0.5)), lr = 0.1)
  expect_equal(opt$param_groups[[1]]$lr, 0.5)
  # uncalled: becomes a pure-Python factory with the torch class
  f <- rtorch_py_factory(optim_adam)
  expect_equal(reticulate::py_str(f$cls), "<class 'torch.optim.adam.Adam'>")
  py <- py_functions(paste(
    "def build(factory, module):",
    "    return factory(module.parameters(), lr=0.02, betas=[0.8, 0.9])",
    sep = "\n"))
  opt <- py$build(optim_adam, model)
  expect_equal(opt$param_groups[[1]]$lr, 0.02)
  expect_equal(opt$param_groups[[1]]$betas, list(0.8, 0.9))
})

test_that("an optimizer step changes the parameters", {
  skip_if_no_torch()
  model <- nn_linear(1, 1)
  opt <- optim_sgd(model$parameters, lr = 0.1)
  before <- as_array(model$weight)
  loss <- (model(torch_ones(1, 1)) - 10)$pow(2)$sum()
  opt$zero_grad()
  loss$backward()
  opt$step()
  expect_false(isTRUE(all.equal(before, as_array(model$weight))))
})

test_that("learning rate schedulers", {
  skip_if_no_torch()
  model <- nn_linear(1, 1)
  opt <- optim_sgd(model$parameters, lr = 1)
  s <- lr_step(opt, step_size = 2, gamma = 0.5)
  lrs <- numeric()
  for (i in 1:4) {
    opt$step()
    s$step()
    lrs <- c(lrs, opt$param_groups[[1]]$lr)
  }
  expect_equal(lrs, c(1, 0.5, 0.5, 0.25))
  opt <- optim_sgd(model$parameters, lr = 1)
  s <- lr_lambda(opt, lr_lambda = function(epoch) 1 / (epoch + 1))
  opt$step()
  s$step()
  expect_equal(opt$param_groups[[1]]$lr, 0.5)
  opt <- optim_sgd(model$parameters, lr = 1)
  s <- lr_multiplicative(opt, lr_lambda = function(epoch) 0.9)
  opt$step()
  s$step()
  expect_equal(opt$param_groups[[1]]$lr, 0.9)
  opt <- optim_sgd(model$parameters, lr = 0.1, momentum = 0.9)
  s <- lr_one_cycle(opt, max_lr = 1, total_steps = 10)
  for (i in 1:3) {
    opt$step()
    s$step()
  }
  expect_gt(opt$param_groups[[1]]$lr, 0.04)
  opt <- optim_sgd(model$parameters, lr = 1)
  s <- lr_reduce_on_plateau(opt, patience = 0, factor = 0.5)
  s$step(1)
  s$step(2)
  expect_equal(opt$param_groups[[1]]$lr, 0.5)
  expect_s3_class(lr_step, "rtorch_lr_generator")
  f <- rtorch_py_factory(lr_step)
  expect_match(reticulate::py_str(f$cls), "StepLR")
})

test_that("param group settings can be changed from R", {
  skip_if_no_torch()
  m <- nn_linear(2, 1)
  opt <- optim_adam(m$parameters, lr = 0.01)
  groups <- reticulate::py_get_attr(opt, "param_groups")
  opt$param_groups[[1]]$lr <- 0.5
  expect_equal(opt$param_groups[[1]]$lr, 0.5)
  # updated in place: same Python list, betas still a tuple
  py <- py_functions("def same(a, b):\n    return a is b")
  expect_true(py$same(reticulate::py_get_attr(opt, "param_groups"), groups))
  expect_equal(reticulate::py_str(reticulate::py_get_item(reticulate::py_get_item(groups, 0L), "betas")),
               "(0.9, 0.999)")
})

test_that("optimizer() defines custom optimizers the R torch way, usable in setup()", {
  skip_if_no_torch()
  optim_plain_sgd <- optimizer(
    "optim_plain_sgd",
    initialize = function(params, lr = 0.1) super$initialize(params, list(lr = lr)),
    step = function(closure = NULL) {
      private$step_helper(closure, function(group, param, g, p) {
        st <- self$state$get(param)
        self$state$set(param, list(n = if (is.null(st)) 1 else st$n + 1))
        param$sub_(param$grad * group$lr)
      })
    }
  )
  expect_s3_class(optim_plain_sgd, "torch_optimizer_generator")
  w <- torch_ones(2, requires_grad = TRUE)
  opt <- optim_plain_sgd(list(w), lr = 0.25)
  expect_equal(class(opt)[1:2], c("optim_plain_sgd", "torch_optimizer"))
  for (i in 1:2) {
    opt$zero_grad()
    (w * 2)$sum()$backward()
    opt$step()
  }
  expect_tensor_equal(w, c(0, 0))                              # 1 - 2 * (0.25 * 2)
  expect_equal(opt$state$get(w)$n, 2)
  # in a fit: the same weights as the built-in SGD with the same lr
  fit_with <- function(optim) {
    torch_manual_seed(3)
    x <- torch_randn(32, 3)
    y <- torch_randn(32, 1)
    f <- nn_linear %>% setup(loss = nn_mse_loss(), optimizer = optim) %>%
      set_hparams(in_features = 3, out_features = 1) %>% set_opt_hparams(lr = 0.05) %>%
      fit(list(x, y), epochs = 2, verbose = FALSE, dataloader_options = list(batch_size = 8, shuffle = FALSE))
    as_array(f$model$weight)
  }
  expect_equal(fit_with(optim_plain_sgd), fit_with(optim_sgd), tolerance = 1e-6)
})

test_that("lr_scheduler() defines custom schedulers the R torch way", {
  skip_if_no_torch()
  lr_halve <- lr_scheduler(
    "lr_halve",
    initialize = function(optimizer, last_epoch = -1, verbose = FALSE) {
      super$initialize(optimizer, last_epoch, verbose)
    },
    get_lr = function() lapply(self$base_lrs, function(lr) lr * 0.5^self$last_epoch)
  )
  opt <- optim_sgd(list(torch_ones(1, requires_grad = TRUE)), lr = 1)
  sched <- lr_halve(opt)
  expect_equal(class(sched)[1:2], c("lr_halve", "lr_scheduler"))
  lrs <- c()
  for (i in 1:3) {
    opt$step()      # before the scheduler, as torch expects (else a Python warning, now an R one)
    sched$step()
    lrs <- c(lrs, opt$param_groups[[1]]$lr)
  }
  expect_equal(lrs, c(0.5, 0.25, 0.125))
})
