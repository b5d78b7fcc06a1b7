# `ctx$<field>` for the engine's Context (luz's ctx) in R callbacks and metrics.
#
# Callbacks read ctx fields every batch, and reticulate makes a plain read costly: it wraps the
# Python value in an R object with its class vector, then converts it (a dict of losses, the whole
# records). Each R binding of ctx (the R object `x`, an environment) keeps the converted value of
# the common fields and, per field, a probe from pyluz/interop/context_view.py; one `len(probe)`
# crossing (a plain integer back, no wrapper) says whether the value is still current:
# - `iter`, `epoch`: the probe's length is the value + 1 (0: read it the usual way);
# - `loss`, `pred`, `target`, `input`, `opt`: a version that moves when the field is no longer the
#   same objects; then the field is read and converted once;
# - `records`: a version that moves when records change; then only the changed entries are
#   converted (from `ctx$log()`'s edits) and put into the kept copy, so reads don't grow with epochs.
# Writes (`ctx$loss <- ...`) go to the engine as before; the probes see the new objects.
# The crossings go through src/pyref.c (pyref.R), which also wraps a new tensor without
# reticulate's generic wrapping (~75k instructions of the ~140k a first read cost through it).

.ctx_probe_kinds <- c(iter = "IntProbe", epoch = "IntProbe", loss = "FieldProbe", pred = "FieldProbe",
                      target = "FieldProbe", input = "FieldProbe", opt = "FieldProbe",
                      records = "RecordsProbe")

# Read with one attribute lookup and conversion (about half of reticulate's generic `$`).
.ctx_plain_fields <- c("min_epochs", "max_epochs", "training", "verbose")

# luz's ctx methods whose engine counterpart has another name or returns a Python object.
.ctx_luz_methods <- list(
  get_metrics_df = function(ctx) function() get_metrics(ctx),
  get_formatted_metrics = function(ctx) function(set, epoch = NULL) {
    values <- ctx$get_metrics(set, epoch)
    lapply(values, format_metric_value)
  },
  unsafe_set_records = function(ctx) function(records) ctx$set_records(records),
  set_verbose = function(ctx) function(verbose = NULL) {
    reticulate::py_set_attr(ctx, "verbose", as_verbose(verbose))
    invisible(NULL)
  }
)

#' @export
`$.pyluz.context.Context` <- function(x, name) {
  # The hot path (every read of a probed field) is written inline: each R call it avoids is
  # ~1-2 µs, as much as the crossing itself (see bench/README.md, "Reading ctx from R").
  reads <- .subset2(x, ".pyluz_reads")   # x is an environment: no dispatch, no closure
  field <- if (is.null(reads)) NULL else .subset2(reads, name)
  if (is.null(field)) {
    kind <- .ctx_probe_kinds[name]
    if (!is.na(kind)) field <- ctx_field(x, name, kind)
  }
  if (!is.null(field)) {
    version <- .Call(C_py_len, field$probe)
    if (is.null(version)) version <- .rt$len(field$probe)
    if (field$int) {
      if (version > 0L) return(version - 1L)
      return(reticulate::py_to_r(.rt$attr(x, name, FALSE)))
    }
    if (version == field$version) return(field$value)
    value <- if (field$records) {
      ctx_records_update(x, field)
    } else if (version %% 2L == 0L) {
      items <- .Call(C_py_tensor_items, field$probe, names(field$value), .py_classes)
      if (is.null(items)) ctx_dict_items(field$probe, field$value) else items
    } else {
      value <- .Call(C_py_attr, x, name, .py_classes)   # a tensor as it comes (see pyref.R)
      if (is.null(value)) value <- py_remembered(.rt$attr(x, name, FALSE))
      if (inherits(value, "torch.Tensor")) value else reticulate::py_to_r(value)
    }
    field$value <- value
    field$version <- version
    return(value)
  }
  if (name %in% .ctx_plain_fields) return(reticulate::py_to_r(reticulate::py_get_attr(x, name)))
  method <- .ctx_luz_methods[[name]]
  if (!is.null(method)) return(method(x))
  NextMethod()
}

# The kept state of one field of this R binding of ctx: an environment with `probe`, `version`,
# `value`, `int` / `records` (its kind; and `changes` for records), made on first use.
ctx_field <- function(x, name, kind) {
  if (is.null(.rt$len)) rt_bind()
  reads <- get0(".pyluz_reads", envir = x, inherits = FALSE)
  if (is.null(reads)) {
    reads <- new.env(parent = emptyenv())
    assign(".pyluz_reads", reads, envir = x)
  }
  field <- new.env(parent = emptyenv())
  make <- reticulate::py_get_attr(engine_module("interop.context_view"), kind)
  field$probe <- if (kind == "RecordsProbe") reticulate::py_call(make, x) else reticulate::py_call(make, x, name)
  field$int <- kind == "IntProbe"
  field$records <- kind == "RecordsProbe"
  if (field$records) field$changes <- reticulate::py_get_attr(field$probe, "changes")
  field$version <- -1L   # versions are >= 0
  field$value <- NULL
  reads[[name]] <- field
  field
}

# A dict whose keys did not change (the loss dict, every batch): its items are fetched one by one
# through the probe and put into the kept list, a fraction of the cost of converting the dict.
# (When all of them are tensors of known types, `C_py_tensor_items` does this in one crossing.)
ctx_dict_items <- function(probe, kept) {
  for (k in names(kept)) {
    item <- .Call(C_py_item, probe, k, .py_classes)
    if (is.null(item)) item <- py_remembered(.rt$item(probe, k, FALSE))
    kept[k] <- list(if (inherits(item, "torch.Tensor")) item else reticulate::py_to_r(item))
  }
  kept
}

# `ctx$records`: the kept copy with the changed entries converted and put in (or all of it
# converted after the records were replaced).
ctx_records_update <- function(x, field) {
  changes <- reticulate::py_to_r(reticulate::py_call(field$changes))
  if (is.null(changes) || is.null(field$value)) return(reticulate::py_to_r(reticulate::py_get_attr(x, "records")))
  records <- field$value
  for (change in changes) {
    what <- change[[1]]
    set <- change[[2]]
    entries <- change[[4]]
    records[[what]][[set]][seq.int(change[[3]], length.out = length(entries))] <- entries
  }
  records
}
