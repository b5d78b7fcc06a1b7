test_that("dataset() getitem is 1-based and items are batched", {
  skip_if_no_torch()
  squares <- dataset(
    "squares",
    initialize = function(n) self$n <- n,
    .getitem = function(i) list(x = torch_tensor(c(i, -i)), y = i^2),
    .length = function() self$n
  )
  ds <- squares(10)
  expect_equal(length(ds), 10)
  expect_equal(ds[3]$y, 9)
  expect_true(inherits(ds, "torch.utils.data.dataset.Dataset"))
  dl <- dataloader(ds, batch_size = 4)
  expect_equal(length(dl), 3)
  it <- dataloader_make_iter(dl)
  b <- dataloader_next(it)
  expect_equal(as_array(b$x), cbind(1:4, -(1:4)))
  expect_equal(as_array(b$y), c(1, 4, 9, 16))
  expect_true(b$y$dtype == torch_float())   # R doubles become float32
  b2 <- dataloader_next(it)
  b3 <- dataloader_next(it)
  expect_equal(as_array(b3$y), c(81, 100))
  expect_null(dataloader_next(it))
  expect_equal(dataloader_next(it, completed = "done"), "done")
  n <- 0
  loop(for (batch in dl) n <- n + batch$y$size(1))
  expect_equal(n, 10)
  dl_drop <- dataloader(ds, batch_size = 4, drop_last = TRUE, shuffle = TRUE)
  expect_equal(length(dl_drop), 2)
})

test_that("Python sees the dataset with 0-based __getitem__", {
  skip_if_no_torch()
  ds <- dataset(.getitem = function(i) i * 10, .length = function() 3)()
  py <- py_functions(paste(
    "def get_items(ds):",
    "    return [float(ds[i]) for i in range(len(ds))]",
    sep = "\n"))
  expect_equal(py$get_items(ds), c(10, 20, 30))
})

test_that(".getbatch datasets are batched by R", {
  skip_if_no_torch()
  bds <- dataset(
    initialize = function(m) self$x <- torch_tensor(m),
    .getbatch = function(i) list(x = self$x[i, , drop = FALSE], i = i),
    .length = function() self$x$size(1)
  )
  ds <- bds(matrix(as.numeric(1:20), 10))
  dl <- dataloader(ds, batch_size = 3)
  b <- dataloader_next(dataloader_make_iter(dl))
  expect_equal(as_array(b$x), matrix(as.numeric(1:20), 10)[1:3, ])
  expect_equal(as_array(b$i), 1:3)
  expect_equal(length(dl), 4)
})

test_that("tensor_dataset + dataloader batching", {
  skip_if_no_torch()
  x <- matrix(as.numeric(1:20), 10)
  y <- 1:10
  td <- tensor_dataset(x, y)
  expect_true(inherits(td, "torch.utils.data.dataset.TensorDataset"))
  expect_equal(length(td), 10)
  item <- td[2]
  expect_equal(as_array(item[[1]]), x[2, ])
  expect_equal(as_array(item[[2]]), 2L)
  dl <- dataloader(td, batch_size = 4)
  expect_equal(length(dl), 3)
  b <- dataloader_next(dataloader_make_iter(dl))
  expect_equal(as_array(b[[1]]), x[1:4, ])
  expect_true(b[[1]]$dtype == torch_float())
  expect_true(b[[2]]$dtype == torch_long())
  named <- tensor_dataset(x = x, y = y)
  expect_equal(names(named[1]), c("x", "y"))
  nb <- dataloader_next(dataloader_make_iter(dataloader(named, batch_size = 5)))
  expect_equal(as_array(nb$y), 1:5)
  sub <- dataset_subset(td, c(2, 5))
  expect_equal(length(sub), 2)
  expect_equal(as_array(sub[2][[2]]), 5L)
})

test_that("iterable datasets", {
  skip_if_no_torch()
  counter <- iterable_dataset(
    "counter",
    initialize = function(n) self$n <- n,
    .iter = function() {
      i <- 0
      function() {
        i <<- i + 1
        if (i > self$n) NULL else list(x = i)
      }
    }
  )
  dl <- dataloader(counter(5), batch_size = 2)
  got <- list()
  loop(for (b in dl) got[[length(got) + 1]] <- as_array(b$x))
  expect_equal(got, list(c(1, 2), c(3, 4), 5))
})

test_that("errors in .getitem come back as R conditions", {
  skip_if_no_torch()
  bad <- dataset(.getitem = function(i) stop("bad item ", i), .length = function() 3)()
  dl <- dataloader(bad, batch_size = 2)
  expect_error(dataloader_next(dataloader_make_iter(dl)), "bad item 1")
})

test_that("forked DataLoader workers run R datasets and get distinct R seeds", {
  skip_if_no_torch()
  skip_on_os("windows")
  ds <- dataset(.getitem = function(i) list(i = i, u = runif(1), pid = Sys.getpid()), .length = function() 8)()
  dl <- dataloader(ds, batch_size = 2, num_workers = 2)
  batches <- list()
  loop(for (b in dl) batches[[length(batches) + 1]] <- b)
  expect_equal(unlist(lapply(batches, function(b) as_array(b$i))), 1:8)
  pids <- unique(unlist(lapply(batches, function(b) as_array(b$pid))))
  expect_false(Sys.getpid() %in% pids)
  u <- unlist(lapply(batches, function(b) as_array(b$u)))
  expect_equal(length(unique(round(u, 6))), 8)   # workers don't repeat R's random stream
})

test_that("a batch that is a named list splits by position in fit(), as luz's, whatever its names", {
  skip_if_no_torch()
  torch_manual_seed(5)
  x <- torch_randn(24, 3)
  y <- x$sum(dim = 2, keepdim = TRUE)
  # names that are neither x/y nor input/target, and the target's name first in the other one
  tokens <- dataset(
    initialize = function() {},
    .getitem = function(i) list(features = x[i, ], answer = y[i, ]),
    .length = function() 24
  )
  swapped <- tensor_dataset(b_in = x, a_out = y)
  seen <- new.env()
  peek <- luz_callback(on_train_batch_begin = function() {
    seen$names <- names(ctx$batch)
    seen$input_shape <- ctx$input$shape
    seen$target_shape <- ctx$target$shape
  })
  for (ds in list(tokens(), swapped)) {
    fitted <- nn_linear %>% setup(loss = nnf_mse_loss, optimizer = optim_sgd) %>%
      set_hparams(in_features = 3, out_features = 1) %>% set_opt_hparams(lr = 0.1) %>%
      fit(ds, epochs = 1, verbose = FALSE, callbacks = list(peek()),
          dataloader_options = list(batch_size = 8))
    expect_equal(seen$input_shape, c(8L, 3L))
    expect_equal(seen$target_shape, c(8L, 1L))
    expect_equal(length(get_metrics(fitted)$value), 1L)
  }
  expect_equal(seen$names, c("b_in", "a_out"))
  # an R dataset's item and batch come back to R as the named lists they were
  expect_equal(names(tokens()[2]), c("features", "answer"))
  b <- dataloader_next(dataloader_make_iter(dataloader(tokens(), batch_size = 4)))
  expect_equal(names(b), c("features", "answer"))
  expect_equal(as_array(b$answer), as_array(y[1:4, ]))
})
