library(testthat)
library(pyluz)

test_check("pyluz")
