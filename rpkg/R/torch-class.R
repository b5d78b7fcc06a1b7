# R-backed Python classes: the object system behind nn_module(), dataset()
# and iterable_dataset().
#
# A generator holds a definition (`def`): public members, private members,
# active bindings, the parent definition (R `inherit`) or a Python base class.
# Its Python class is created lazily (first instantiation) by
# `pyluz.interop.torch_class.make_class()`.
#
# Each instance has an R-side state environment `st`:
#   st$pub     public fields, methods (re-enclosed) and active bindings
#   st$priv    private fields and methods
#   st$weak    Python weakref to the instance
#   st$strong  cached strong reference (cleared after each top-level call)
#   st$py_names  names registered on the Python side from R (modules, params)
# Methods are the user's closures with a new enclosing environment per class
# level holding `self` (active binding), `private`, `super` and `ctx`
# (active binding), as R6 does.  `st` holds the Python object only weakly; a
# strong reference to the instance is cached in `st$strong` while R code runs
# and dropped at the end of each top-level call (and of each outermost engine
# call).
#
# Python holds R functions of a class -- the methods of each instance, the
# class's initialize and clone -- only through R weak references (bridge.R,
# `owned_function()`): the methods keyed by the instance's `st`, initialize and
# clone by the definition `def`.  Held strongly, they would close a cycle
# across the two languages whenever a generator is defined inside a function:
# Python instance -> R method -> the function's frame -> a fitted R object ->
# the Python instance, which neither collector sees, so every model fitted
# there lived for the whole session.  R keeps them alive instead: the
# generator holds `def`; `def` keeps the `st` of every instance Python still
# has (`.live_states()`); an R reference to an instance holds its `st`
# (`.stash_state()`); a setup() or fitted object holds its generator.  When R
# holds none of these, the methods go, and with them the frame and the models.
# Python code then calling a method of a surviving instance gets an error that
# says so (`.freed_text()`).

.rclass_registry <- new.env(parent = emptyenv())
.rclass_cache <- new.env(parent = emptyenv())   # states holding a strong ref

# Hooks for the luz part of the package:
#   ctx: function(self) -> the value of the free variable `ctx` inside module
#        methods when nothing was bound with rtorch_bind_ctx(); default: the
#        Python attribute `ctx` of the module (what the engine sets), or NULL.
.rtorch_hooks <- new.env(parent = emptyenv())

.install_cache_clearer <- function() {
  .remove_cache_clearer()
  addTaskCallback(function(...) {
    .clear_strong_refs()
    TRUE
  }, name = "pyluz_rtorch_refs")
  invisible()
}

.remove_cache_clearer <- function() {
  if ("pyluz_rtorch_refs" %in% getTaskCallbackNames()) removeTaskCallback("pyluz_rtorch_refs")
  invisible()
}

.clear_strong_refs <- function() {
  keys <- ls(.rclass_cache, all.names = TRUE)
  if (length(keys)) {
    for (k in keys) {
      st <- .rclass_cache[[k]]
      st$strong <- NULL
      st$cache <- new.env(parent = emptyenv())
    }
    rm(list = keys, envir = .rclass_cache)
  }
  .forget_dead_states()
  invisible()
}

.registry_put <- function(key, st) {
  k <- as.character(key)
  assign(k, rlang::new_weakref(st), envir = .rclass_registry)
  # occasional sweep of dead entries
  if (as.numeric(key) %% 200 == 0) {
    for (nm in ls(.rclass_registry, all.names = TRUE)) {
      if (is.null(rlang::wref_key(.rclass_registry[[nm]]))) rm(list = nm, envir = .rclass_registry)
    }
  }
}

.registry_get <- function(key) {
  w <- .rclass_registry[[as.character(key)]]
  if (is.null(w)) NULL else rlang::wref_key(w)
}

# The `st` of the live instances of one definition: an environment (key -> st) held by an R weak
# reference keyed by `def`, so that it lives as long as `def` does without being part of `def`
# (luz_save() serializes generators, and with them `def`, but not the instances).
.rclass_live <- new.env(parent = emptyenv())
.rclass_live$n <- 0L

.live_states <- function(def, create = TRUE) {
  id <- def$live_id
  w <- if (!is.null(id)) .rclass_live[[id]]
  # a `def` read back by unserialize() carries the id of the one saved: not its states
  if (!is.null(w) && identical(rlang::wref_key(w), def)) return(rlang::wref_value(w))
  if (!create) return(NULL)
  .rclass_live$n <- .rclass_live$n + 1L
  if (.rclass_live$n %% 200L == 0L) {   # occasional sweep of the definitions R freed
    for (nm in ls(.rclass_live, pattern = "^d")) {
      if (is.null(rlang::wref_key(.rclass_live[[nm]]))) rm(list = nm, envir = .rclass_live)
    }
  }
  id <- paste0("d", .rclass_live$n)
  states <- new.env(parent = emptyenv())
  assign(id, rlang::new_weakref(def, value = states), envir = .rclass_live)
  def$live_id <- id
  states
}

# Forget the `st` of the instances Python freed (torch_class.take_dead()): R no longer keeps their
# methods.
.forget_dead_states <- function() {
  if (is.null(.pycache[["class.weak"]])) return(invisible())  # no R-backed object yet
  for (key in .pycall(.py("class", "take_dead"))) {
    st <- .registry_get(key)
    k <- as.character(key)
    if (exists(k, envir = .rclass_registry, inherits = FALSE)) rm(list = k, envir = .rclass_registry)
    if (is.null(st)) next
    states <- .live_states(st$def, create = FALSE)
    if (!is.null(states) && exists(k, envir = states, inherits = FALSE)) rm(list = k, envir = states)
  }
  invisible()
}

# What calling an R method of a class says once R freed it (see the header).
.freed_text <- function(def, name) {
  sprintf(paste("The R method %s.%s was freed: R no longer holds the %s generator, an R reference to one",
                "of its instances or a setup()/fitted object made from it. Keep one of them in R while",
                "Python uses the module."), def$classname, name, def$classname)
}

# The Python object (strong ref) of an instance state.
.self_of <- function(st) {
  s <- st$strong
  if (is.null(s)) {
    s <- .pycall_list(st$weak, list())
    if (is.null(s)) stop("this R-defined object has been garbage collected on the Python side", call. = FALSE)
    .stash_state(s, st)
    st$strong <- s
    assign(st$key_chr, st, envir = .rclass_cache)
  }
  s
}

.stash_state <- function(x, st) {
  e <- if (is.function(x)) environment(x) else x
  if (is.environment(e)) try(assign(".__rstate__", st, envir = e), silent = TRUE)
  invisible()
}

# R-side state of an R-backed Python object (or NULL).
.rstate <- function(x) {
  e <- if (is.function(x)) environment(x) else x
  st <- if (is.environment(e)) get0(".__rstate__", envir = e, inherits = FALSE) else NULL
  if (is.null(st)) {
    key <- reticulate::py_get_attr(x, "_r_key", silent = TRUE)
    if (is.null(key)) return(NULL)
    st <- .registry_get(reticulate::py_to_r(key))
    if (!is.null(st)) .stash_state(x, st)
  }
  st
}

# ---------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------

.split_members <- function(members) {
  if (length(members) && (is.null(names(members)) || any(!nzchar(names(members))))) {
    stop("all members passed in `...` must be named", call. = FALSE)
  }
  members
}

.new_generator <- function(kind, classname, inherit, public, private, active, parent_env, gen_class) {
  public <- .split_members(public)
  parent_def <- NULL
  py_base <- NULL
  if (!is.null(inherit)) {
    if (inherits(inherit, c("nn_module_generator", "dataset_generator"))) {
      parent_def <- attr(inherit, "def")
    } else if (is.function(inherit) && !is.null(.layer_py_class(inherit))) {
      py_base <- .layer_py_class(inherit)   # resolved to the Python class lazily
    } else if (is_py(inherit)) {
      py_base <- inherit
    } else {
      stop("`inherit` must be a generator created by nn_module()/dataset() or a Python class",
           call. = FALSE)
    }
  }
  def <- new.env(parent = emptyenv())
  def$kind <- kind
  def$classname <- classname %||% switch(kind, module = "nn_module", optimizer = "optimizer",
                                          lr_scheduler = "lr_scheduler", "dataset")
  def$public <- public
  def$private <- private %||% list()
  def$active <- active %||% list()
  def$parent_env <- parent_env
  def$parent <- parent_def
  def$py_base <- py_base
  def$pycls <- NULL
  gen <- function(...) NULL
  # formals of initialize (up the chain) for argument matching and completion
  init <- .find_member(def, "initialize")
  if (is.function(init)) formals(gen) <- formals(init) else formals(gen) <- alist(... = )
  body(gen) <- bquote(.rclass_new(.(def), .gen_args(environment(), sys.function())))
  environment(gen) <- asNamespace("pyluz")
  attr(gen, "def") <- def
  class(gen) <- c(gen_class, "rtorch_generator")
  gen
}

# Collect the arguments a generator was called with, keeping `...` and
# dropping formals that were not supplied (their defaults live in initialize).
.gen_args <- function(env, fn) {
  fmls <- names(formals(fn))
  out <- list()
  for (n in fmls) {
    if (n == "...") {
      dots <- eval(quote(list(...)), env)
      out <- c(out, dots)
    } else if (!eval(call("missing", as.name(n)), env)) {
      out[n] <- list(get(n, envir = env))
    }
  }
  out
}

.find_member <- function(def, name, where = "public") {
  while (!is.null(def)) {
    m <- def[[where]][[name]]
    if (!is.null(m)) return(m)
    def <- def$parent
  }
  NULL
}

.method_names <- function(def) {
  nms <- character()
  d <- def
  while (!is.null(d)) {
    fn <- vapply(d$public, is.function, logical(1))
    nms <- union(nms, names(d$public)[fn])
    d <- d$parent
  }
  setdiff(nms, c("initialize", "clone"))
}

.levels <- function(def) {
  out <- list()
  while (!is.null(def)) {
    out <- c(out, list(def))
    def <- def$parent
  }
  out
}

.root_py_base <- function(def) {
  while (!is.null(def$parent)) def <- def$parent
  b <- def$py_base
  if (is.character(b)) {
    b <- .pycall(.py("nn", "layer_class"), b)
    def$py_base <- b
  }
  b
}

# Python class of a definition (created on first use).
.rclass_pyclass <- function(def) {
  if (!is.null(def$pycls) && !reticulate::py_is_null_xptr(def$pycls)) return(def$pycls)
  parent <- if (!is.null(def$parent)) .rclass_pyclass(def$parent) else NULL
  own <- names(def$public)[vapply(def$public, is.function, logical(1))]
  own <- setdiff(own, c("initialize", "clone"))
  r_init <- function(pyself, key, args, kwargs) {
    .rclass_setup(def, pyself, key, c(args, kwargs), run_init = TRUE)
    NULL
  }
  r_clone <- function(new, old, key) {
    .rclass_clone(def, new, old, key)
    NULL
  }
  py_base <- if (is.null(def$parent)) .root_py_base(def) else NULL
  # held weakly, keyed by `def` (see the header)
  r_init <- owned_function(r_init, def, "initialize", .freed_text(def, "initialize"))
  r_clone <- owned_function(r_clone, def, "clone", .freed_text(def, "clone"))
  cls <- .pycall(.py("class", "make_class"), def$kind, def$classname, as.list(own),
                 r_callable(r_init), r_callable(r_clone), parent = parent, py_base = py_base)
  def$pycls <- cls
  cls
}

# Instantiate from R: arguments stay R values (not converted through Python).
.rclass_new <- function(def, args) {
  cls <- .rclass_pyclass(def)
  r <- .pycall(.py("class", "new_instance"), cls)
  obj <- r[[1]]
  st <- .rclass_setup(def, obj, r[[2]], args, run_init = TRUE)
  obj
}

# Enclosing environment of one class level's methods.  Built in its own small
# frame so the active bindings don't capture the Python object.
.method_env <- function(parent_env, st, sup) {
  enc <- new.env(parent = parent_env)
  makeActiveBinding("self", function() .self_of(st), enc)
  makeActiveBinding("ctx", function() .ctx_of(st), enc)
  enc$private <- st$priv
  enc$super <- sup
  enc
}

# Build the R state of `pyself`, attach the methods, run initialize.
.rclass_setup <- function(def, pyself, key, args, run_init = TRUE, copy_from = NULL) {
  if (!is.list(args)) args <- as.list(args)
  st <- new.env(parent = emptyenv())
  st$key <- key
  st$key_chr <- as.character(key)
  st$def <- def
  st$weak <- .pycall(.py("class", "weak"), pyself, key)  # queues `key` once Python frees it
  st$strong <- pyself
  st$ctx <- NULL
  st$py_names <- new.env(parent = emptyenv())
  st$cache <- new.env(parent = emptyenv())   # submodules/parameters (wrappers)
  st$pub <- new.env(parent = emptyenv())
  st$priv <- new.env(parent = emptyenv())
  assign(st$key_chr, st, envir = .rclass_cache)
  .stash_state(pyself, st)
  .registry_put(key, st)
  .forget_dead_states()
  assign(st$key_chr, st, envir = .live_states(def))

  if (def$kind == "optimizer") .optimizer_members(st)
  levels <- .levels(def)
  super_acc <- list()   # methods visible to the next (more derived) level
  py_base <- .root_py_base(def)
  for (lv in rev(levels)) {
    enc <- .method_env(lv$parent_env, st, .make_super(super_acc, st, py_base, def$kind))
    bind <- function(f) {
      if (is.function(f)) environment(f) <- enc
      f
    }
    for (nm in names(lv$public)) {
      v <- lv$public[[nm]]
      if (is.function(v)) {
        f <- bind(v)
        assign(nm, f, envir = st$pub)
        super_acc[[nm]] <- f
      } else if (is.null(copy_from)) {
        assign(nm, v, envir = st$pub)
      }
    }
    for (nm in names(lv$private)) {
      v <- lv$private[[nm]]
      if (is.function(v)) {
        f <- bind(v)
        assign(nm, f, envir = st$priv)
        super_acc[[nm]] <- f
      } else if (is.null(copy_from)) {
        assign(nm, v, envir = st$priv)
      }
    }
    for (nm in names(lv$active)) {
      f <- bind(lv$active[[nm]])
      if (exists(nm, envir = st$pub, inherits = FALSE)) rm(list = nm, envir = st$pub)
      makeActiveBinding(nm, f, st$pub)
    }
  }
  if (!is.null(copy_from)) .copy_fields(copy_from, st)

  # Python-facing methods
  mnames <- .method_names(def)
  if (length(mnames)) {
    fns <- lapply(mnames, function(n) {
      # held weakly, keyed by `st` (see the header)
      f <- owned_function(get(n, envir = st$pub), st, n, .freed_text(def, n))
      if (n == ".iter" && def$kind == "iterable_dataset") .py_facing_iter(f) else r_callable(f)
    })
    .pycall(.py("class", "attach"), pyself, as.list(mnames), fns)
  }
  if (run_init) {
    init <- if (exists("initialize", envir = st$pub, inherits = FALSE)) get("initialize", envir = st$pub)
    if (is.function(init)) {
      do.call(init, args)
    } else if (!is.null(py_base)) {
      .super_call(st, py_base, "__init__", args)
    } else if (length(args)) {
      stop(def$classname, " has no initialize method but was called with arguments", call. = FALSE)
    }
  }
  st
}

.copy_fields <- function(from, to) {
  for (nm in ls(from$pub, all.names = TRUE)) {
    if (bindingIsActive(nm, from$pub)) next
    v <- get(nm, envir = from$pub)
    if (!is.function(v) || !exists(nm, envir = to$pub, inherits = FALSE)) assign(nm, v, envir = to$pub)
  }
  for (nm in ls(from$priv, all.names = TRUE)) {
    v <- get(nm, envir = from$priv)
    if (!is.function(v) || !exists(nm, envir = to$priv, inherits = FALSE)) assign(nm, v, envir = to$priv)
  }
  for (nm in ls(from$py_names, all.names = TRUE)) assign(nm, TRUE, envir = to$py_names)
  to$ctx <- from$ctx
}

.rclass_clone <- function(def, new, old, key) {
  from <- .rstate(old)
  if (is.null(from)) stop("cannot clone: the R state of the object was lost", call. = FALSE)
  .rclass_setup(def, new, key, list(), run_init = FALSE, copy_from = from)
  invisible()
}

# `super`: the parent level's methods bound to the same instance; names not
# found there go to the Python base class (e.g. nn.Module / a Python parent).
.make_super <- function(methods, st, py_base, kind) {
  sup <- list2env(methods, parent = emptyenv())
  if (!exists("initialize", envir = sup, inherits = FALSE)) {
    sup$initialize <- function(...) {
      base <- py_base %||% if (kind %in% c("optimizer", "lr_scheduler")) .default_base(kind)
      if (!is.null(base)) .super_call(st, base, "__init__", list(...))
      invisible(NULL)
    }
  }
  attr(sup, "rtorch_state") <- st
  attr(sup, "py_base") <- py_base
  attr(sup, "kind") <- kind
  class(sup) <- "rtorch_super"
  sup
}

.default_base <- function(kind) {
  switch(kind,
         module = py_module("torch")$nn$Module,
         dataset = py_module("torch")$utils$data$Dataset,
         iterable_dataset = py_module("torch")$utils$data$IterableDataset,
         optimizer = py_module("torch")$optim$Optimizer,
         lr_scheduler = py_module("torch")$optim$lr_scheduler$LRScheduler)
}

.super_call <- function(st, base, name, args) {
  nms <- names(args) %||% rep("", length(args))
  .pycall(.py("class", "call_super"), base, name, .self_of(st), unname(args[!nzchar(nms)]), args[nzchar(nms)])
}

.super_fields <- c("parameters", "buffers", "children", "modules")

#' @export
`$.rtorch_super` <- function(x, name) {
  if (exists(name, envir = x, inherits = FALSE)) return(get(name, envir = x))
  st <- attr(x, "rtorch_state")
  # fields of the instance (R torch's active bindings): super$parameters$weight
  if (name %in% .super_fields) return(.module_named(.self_of(st), name))
  base <- attr(x, "py_base")
  if (is.null(base)) base <- .default_base(attr(x, "kind"))
  force(name)
  function(...) .super_call(st, base, name, list(...))
}

# The free variable `ctx` of module methods.
.ctx_of <- function(st) {
  if (!is.null(st$ctx)) return(st$ctx)
  hook <- .rtorch_hooks$ctx
  self <- .self_of(st)
  if (is.function(hook)) return(hook(self))
  v <- reticulate::py_get_attr(self, "ctx", silent = TRUE)
  if (is.null(v)) NULL else reticulate::py_to_r(v)
}

#' Bind the `ctx` free variable of an R-defined module (internal, for luz)
#'
#' Inside methods of R-defined modules the free variable `ctx` evaluates to
#' the object bound here (for the instance and its submodules' own state
#' only); when nothing is bound it is the module's Python attribute `ctx`.
#'
#' @param module An instance of an `nn_module()` generator.
#' @param ctx Any R object, or `NULL` to unbind.
#' @return `module`, invisibly.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   Net <- nn_module(forward = function(x) x, where = function() ctx$phase)
#'   m <- Net()
#'   rtorch_bind_ctx(m, list(phase = "train"))
#'   m$where()
#' }
#' @keywords internal
#' @export
rtorch_bind_ctx <- function(module, ctx) {
  st <- .rstate(module)
  if (is.null(st)) stop("`module` is not an R-defined module", call. = FALSE)
  st$ctx <- ctx
  invisible(module)
}

# ---------------------------------------------------------------------------
# `$` / `$<-` on R-backed objects (Python class RObject)
# ---------------------------------------------------------------------------

#' @export
`$.pyluz.interop.torch_class.RObject` <- function(x, name) {
  st <- .rstate(x)
  if (is.null(st)) return(NextMethod())
  v <- get0(name, envir = st$cache, inherits = FALSE)
  if (!is.null(v)) return(v)
  if (exists(name, envir = st$pub, inherits = FALSE)) return(get(name, envir = st$pub))
  v <- NextMethod()
  if (exists(name, envir = st$py_names, inherits = FALSE)) .cache_child(st, name, v)
  v
}

# Every R reference to an R-backed instance holds the instance's R state, and so its methods (see
# the header): `m <- fitted$model` keeps working after the fitted object and the generator are gone.
#' @export
py_to_r.pyluz.interop.torch_class.RObject <- function(x) {
  .rstate(x)
  NextMethod()
}

# Submodules and parameters registered from R are cached on the R side until
# the end of the current top-level call (Python-side replacements are picked
# up at the next one).
.cache_child <- function(st, name, value) {
  if (inherits(value, c("torch.nn.modules.module.Module", "torch.nn.parameter.Parameter"))) {
    assign(name, value, envir = st$cache)
    assign(st$key_chr, st, envir = .rclass_cache)
  }
  invisible()
}

#' @export
`[[.pyluz.interop.torch_class.RObject` <- function(x, name) {
  if (is.character(name)) return(`$.pyluz.interop.torch_class.RObject`(x, name))
  NextMethod()
}

.py_registered <- function(value) {
  inherits(value, c("torch.nn.modules.module.Module", "torch.nn.parameter.Parameter", "nn_buffer"))
}

#' @export
`$<-.pyluz.interop.torch_class.RObject` <- function(x, name, value) {
  st <- .rstate(x)
  if (is.null(st)) {
    .py_setattr(x, name, value)
    return(x)
  }
  if (.py_registered(value)) {
    if (exists(name, envir = st$pub, inherits = FALSE) && !bindingIsActive(name, st$pub)) {
      rm(list = name, envir = st$pub)
    }
    .py_setattr(x, name, value)
    assign(name, TRUE, envir = st$py_names)
    if (exists(name, envir = st$cache, inherits = FALSE)) rm(list = name, envir = st$cache)
    .cache_child(st, name, value)
  } else if (exists(name, envir = st$pub, inherits = FALSE)) {
    assign(name, value, envir = st$pub)
  } else if (exists(name, envir = st$py_names, inherits = FALSE) ||
             (!is.null(.root_py_base(st$def)) && reticulate::py_has_attr(x, name))) {
    if (exists(name, envir = st$cache, inherits = FALSE)) rm(list = name, envir = st$cache)
    .py_setattr(x, name, value)
  } else {
    assign(name, value, envir = st$pub)
  }
  if (isTRUE(st$watched)) .capture_field_assigned(x)  # a traced forward may have read the old value
  x
}

#' @export
`[[<-.pyluz.interop.torch_class.RObject` <- function(x, name, value) {
  `$<-.pyluz.interop.torch_class.RObject`(x, name, value)
}

#' @export
.DollarNames.pyluz.interop.torch_class.RObject <- function(x, pattern = "") {
  st <- .rstate(x)
  nms <- c(if (!is.null(st)) ls(st$pub), "parameters", "modules", "children", "train", "eval",
           "to", "state_dict", "load_state_dict", "zero_grad")
  nms <- unique(nms)
  nms[grepl(pattern, nms)]
}

.py_setattr <- function(x, name, value) {
  if (inherits(value, "nn_buffer")) {
    .pycall(reticulate::py_get_attr(x, "register_buffer"), name, value$tensor,
            persistent = isTRUE(value$persistent))
  } else {
    reticulate::py_set_attr(x, name, value)
  }
  invisible(x)
}

# Calling an R-backed (or any) module from R: R errors raised in its R
# methods come back as the original R condition.
.wrap_module_callable <- function(x) {
  force(x)
  f <- function(...) with_r_errors(x(...))
  f
}
