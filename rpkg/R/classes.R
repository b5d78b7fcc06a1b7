# How luz builds callbacks and metrics from R closures: an R6 class (inheritance and `super$`
# through R6), a constructor function with the formals of `initialize`, and `ctx` bound into
# the instances' environments so methods see it as a free variable.

make_r6_class <- function(name, public, private, active, parent_env, inherit) {
  if (!is.null(name) && !(is.character(name) && length(name) == 1 && !is.na(name))) {
    rlang::abort("`name` must be NULL or a single string.", class = "value_error")
  }
  if (length(public) && (is.null(names(public)) || any(!nzchar(names(public))))) {
    rlang::abort("Every member passed in `...` must be named (e.g. `on_epoch_end = function() ...`).",
                 class = "value_error")
  }
  # `inherit` is given as a value (R6 would otherwise look the symbol up in `parent_env`).
  do.call(R6::R6Class, list(
    classname = name, public = public, private = private, active = active,
    inherit = inherit, parent_env = parent_env, lock_objects = FALSE
  ))
}

find_initialize <- function(r6_class) {
  while (!is.null(r6_class)) {
    init <- r6_class$public_methods$initialize
    if (!is.null(init)) return(init)
    r6_class <- r6_class$get_inherit()
  }
  function() NULL
}

# The R6 class behind a luz_callback()/luz_metric() constructor (for `inherit =`).
inherit_class <- function(inherit, base, what) {
  if (is.null(inherit)) return(base)
  cls <- attr(inherit, "r6_class")
  if (inherits(inherit, "luz_metric_generator")) cls <- inherit$r6_class
  else if (inherits(inherit, "R6ClassGenerator")) cls <- inherit
  if (is.null(cls)) {
    rlang::abort(sprintf("`inherit` must be a %s() definition, got an object of class <%s>.",
                         what, paste(class(inherit), collapse = "/")), class = "value_error")
  }
  cls
}

# A function with the formals of `initialize` whose body is `.make(r6_class, <its arguments>)`.
constructor_with_formals <- function(r6_class, make) {
  fmls <- formals(find_initialize(r6_class))
  args <- lapply(names(fmls), as.name)
  names(args) <- ifelse(names(fmls) == "...", "", names(fmls))
  f <- function() NULL
  formals(f) <- fmls
  body(f) <- as.call(c(list(as.name(".make"), as.name("r6_class")), args))
  environment(f) <- list2env(list(r6_class = r6_class, .make = make), parent = environment(constructor_with_formals))
  f
}

# luz: ctx is bound in the environment of the instance (and of its `super` objects).
bind_context <- function(x, ctx) {
  env <- x$.__enclos_env__
  while (!is.null(env)) {
    assign("ctx", ctx, envir = env)
    sup <- env$super
    env <- if (is.null(sup)) NULL else sup$.__enclos_env__
  }
  invisible(NULL)
}
