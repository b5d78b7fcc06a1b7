# AutoResume inside an epoch, driven from R: a fit SIGKILLed at a random step (a forked R process,
# parallel::mcparallel) and re-run ends with the weights of an uninterrupted fit, R's RNG included.

resume_net <- nn_module(
  "ResumeNet",
  initialize = function() {
    self$fc1 <- nn_linear(4, 8)
    self$drop <- nn_dropout(0.3)
    self$fc2 <- nn_linear(8, 1)
  },
  forward = function(x) self$fc2(self$drop(nnf_relu(self$fc1(x))))
)

# 96 rows, a quarter for validation, batches of 16: 4 training steps per epoch, 12 in all.
resume_fit <- function(d, path, kill_at = NULL, verbose = FALSE) {
  set.seed(5)
  torch_manual_seed(5)
  steps <- 0
  killer <- luz_callback(
    "killer",
    on_train_batch_end = function() {
      steps <<- steps + 1
      if (!is.null(kill_at) && steps == kill_at) tools::pskill(Sys.getpid(), tools::SIGKILL)
    }
  )
  resume_net %>%
    # R's RNG scales the loss: the re-run must continue R's random numbers where they were.
    setup(loss = function(pred, target) nnf_mse_loss(pred, target) * (1 + 0.2 * runif(1)), optimizer = optim_adam) %>%
    set_opt_hparams(lr = 0.02) %>%
    fit(list(d$x, d$x[, 1:2] %*% c(1, -1) + 0.1 * d$y), epochs = 3, valid_data = 0.25, verbose = verbose,
        dataloader_options = list(batch_size = 16),
        callbacks = list(killer(), luz_callback_auto_resume(path, every_n_steps = 2)))
}

resume_weights <- function(fitted) {
  lapply(fitted$model$state_dict(), function(t) as_array(t))
}

test_that("killed with SIGKILL at random steps from R, the re-run gives the uninterrupted weights", {
  skip_if_no_engine()
  skip_on_os("windows")
  py_torch()$set_num_threads(1L)
  d <- make_class_data(96)
  dir <- withr::local_tempdir()
  reference <- resume_fit(d, file.path(dir, "ref.pt"))
  set.seed(11)
  for (at in sample(5:11, 5)) {  # after the epoch-1 checkpoint, so every re-run resumes
    path <- file.path(dir, sprintf("state-%d.pt", at))
    job <- parallel::mcparallel(resume_fit(d, path, kill_at = at), silent = TRUE)
    result <- suppressWarnings(parallel::mccollect(job))  # "did not deliver a result": it was killed
    expect_null(result[[1]])  # killed: no result came back
    expect_true(file.exists(path))
    resumed <- resume_fit(d, path)
    expect_identical(resume_weights(resumed), resume_weights(reference))
    expect_identical(resumed$records$metrics, reference$records$metrics)
    expect_false(file.exists(path))
  }
})

test_that("the resume message says where training continues", {
  skip_if_no_engine()
  skip_on_os("windows")
  d <- make_class_data(96)
  dir <- withr::local_tempdir()
  path <- file.path(dir, "state.pt")
  suppressWarnings(parallel::mccollect(parallel::mcparallel(resume_fit(d, path, kill_at = 7), silent = TRUE)))
  msgs <- capture_messages(capture_output(resume_fit(d, path, verbose = TRUE)))
  expect_true(any(grepl(paste0("Resumed from ", path, " (at epoch 2, step [0-9] of 4|after epoch 1 of 3)"), msgs)))
})

test_that("luz_callback_auto_resume passes every_n_steps and every_seconds on", {
  skip_if_no_engine()
  cb <- luz_callback_auto_resume(file.path(tempdir(), "s.pt"), every_n_steps = 10, every_seconds = 60)
  expect_equal(cb$every_n_steps, 10L)
  expect_equal(cb$every_seconds, 60)
  expect_null(luz_callback_auto_resume(file.path(tempdir(), "s.pt"))$every_n_steps)
  expect_error(luz_callback_auto_resume(every_n_steps = 0), "every_n_steps", class = "pyluz_error")
})
