m <- matrix(as.numeric(1:12), nrow = 3)

test_that("[ follows R indexing for scalars, ranges and vectors", {
  skip_if_no_torch()
  x <- torch_tensor(m)
  expect_equal(as_array(x[2, ]), m[2, ])
  expect_equal(as_array(x[, 3]), m[, 3])
  expect_equal(as_array(x[2:3, ]), m[2:3, ])
  expect_equal(as_array(x[1:2, 2:4]), m[1:2, 2:4])
  expect_equal(as_array(x[c(1, 3), c(2, 4)]), m[c(1, 3), c(2, 4)])
  expect_equal(as_array(x[c(3, 1), ]), m[c(3, 1), ])
  expect_equal(as_array(x[3:1, 1]), m[3:1, 1])
  expect_equal(x[2, 3]$item(), m[2, 3])
  expect_equal(x[2]$shape, 4L)  # fewer indices than dims: the rest is whole
  expect_equal(as_array(x[2, , drop = FALSE]), m[2, , drop = FALSE])
  expect_equal(x[2, 3, drop = FALSE]$shape, c(1L, 1L))
})

test_that("negative indices count from the end; N and .. work", {
  skip_if_no_torch()
  x <- torch_tensor(m)
  v <- torch_tensor(c(10, 20, 30, 40))
  expect_equal(v[-1]$item(), 40)
  expect_equal(as_array(x[-1, ]), m[3, ])
  expect_equal(as_array(v[2:N]), c(20, 30, 40))
  expect_equal(as_array(v[-2:-1]), c(30, 40))
  expect_equal(as_array(v[1:N:2]), c(10, 30))
  expect_equal(as_array(x[.., 1]), m[, 1])
  a <- torch_tensor(array(as.numeric(1:24), c(2, 3, 4)))
  expect_equal(as_array(a[.., 2]), array(as.numeric(1:24), c(2, 3, 4))[, , 2])
  expect_equal(as_array(a[1, ..]), array(as.numeric(1:24), c(2, 3, 4))[1, , ])
  expect_equal(as_array(v[slc(2, 3)]), c(20, 30))
  expect_equal(x[, newaxis, 1]$shape, c(3L, 1L))
  expect_error(v[0], "1 but found a 0")
})

test_that("masks and index tensors", {
  skip_if_no_torch()
  x <- torch_tensor(m)
  # boolean masks select in row-major order, as in R torch
  expect_equal(as_array(x[x > 6]), t(m)[t(m) > 6])
  expect_equal(as_array(x[c(TRUE, FALSE, TRUE), 1]), m[c(TRUE, FALSE, TRUE), 1])
  expect_equal(as_array(x[torch_tensor(c(3L, 1L)), 2]), m[c(3, 1), 2])
})

test_that("[<- assigns in place with the same semantics", {
  skip_if_no_torch()
  x <- torch_tensor(m)
  r <- m
  x[1, 1] <- 100
  r[1, 1] <- 100
  expect_equal(as_array(x), r)
  x[2, ] <- c(-1, -2, -3, -4)
  r[2, ] <- c(-1, -2, -3, -4)
  expect_equal(as_array(x), r)
  x[c(1, 3), c(2, 4)] <- 0
  r[c(1, 3), c(2, 4)] <- 0
  expect_equal(as_array(x), r)
  x[c(1, 3), c(1, 3)] <- matrix(c(7, 8, 9, 10), 2)
  r[c(1, 3), c(1, 3)] <- matrix(c(7, 8, 9, 10), 2)
  expect_equal(as_array(x), r)
  x[x < 0] <- 5
  r[r < 0] <- 5
  expect_equal(as_array(x), r)
  x[, -1] <- torch_zeros(3)
  r[, 4] <- 0
  expect_equal(as_array(x), r)
})
