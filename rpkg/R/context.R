# `ctx$<field>` for the engine's Context (luz's ctx) in R callbacks and metrics.
#
# Callbacks read ctx fields every batch, and reticulate makes a plain read costly: it wraps the
# Python value in an R object with its class vector, then converts it (a dict of losses, the whole
# records). Each R binding of ctx (the R object `x`, an environment) keeps the converted value of
# the common fields and, per field, a probe from pyluz/interop/context_view.py; one
# `reticulate::py_len(probe)` crossing (a plain integer back, no wrapper) says whether the value is
# still current:
# - `iter`, `epoch`: the probe's length is the value + 1 (0: read it the usual way);
# - `loss`, `pred`, `target`, `input`, `opt`: a version that moves when the field is no longer the
#   same objects; then the field is read and converted once;
# - `records`: a version that moves when records change; then only the changed entries are
#   converted (from `ctx$log()`'s edits) and put into the kept copy, so reads don't grow with epochs.
# Writes (`ctx$loss <- ...`) go to the engine as before; the probes see the new objects.

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
  kind <- .ctx_probe_kinds[name]
  if (!is.na(kind)) {
    field <- ctx_field(x, name, kind)
    if (kind == "IntProbe") {
      n <- reticulate::py_len(field$probe)
      if (n > 0L) return(n - 1L)
      return(reticulate::py_to_r(reticulate::py_get_attr(x, name)))
    }
    version <- reticulate::py_len(field$probe)
    if (identical(version, field$version)) return(field$value)
    value <- if (kind == "RecordsProbe") {
      ctx_records_update(x, field)
    } else {
      ctx_field_value(x, name, field$probe, if (version %% 2L == 0L) names(field$value))
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
# `value` (and `changes` for records), made on first use.
ctx_field <- function(x, name, kind) {
  reads <- get0(".pyluz_reads", envir = x, inherits = FALSE)
  if (is.null(reads)) {
    reads <- new.env(parent = emptyenv())
    assign(".pyluz_reads", reads, envir = x)
  }
  field <- reads[[name]]
  if (is.null(field)) {
    field <- new.env(parent = emptyenv())
    make <- reticulate::py_get_attr(engine_module("interop.context_view"), kind)
    field$probe <- if (kind == "RecordsProbe") reticulate::py_call(make, x) else reticulate::py_call(make, x, name)
    if (kind == "RecordsProbe") field$changes <- reticulate::py_get_attr(field$probe, "changes")
    reads[[name]] <- field
  }
  field
}

# What `$` gives for the field: a tensor as it comes (converting it would return it unchanged),
# anything else converted. `keys`: the names of a dict whose keys did not change (the loss dict,
# every batch): its items are fetched one by one through the probe, a fraction of the cost of
# converting the dict.
ctx_field_value <- function(x, name, probe, keys = NULL) {
  if (!is.null(keys)) {
    items <- lapply(keys, function(k) as_field_item(reticulate::py_get_item(probe, k)))
    names(items) <- keys
    return(items)
  }
  as_field_item(reticulate::py_get_attr(x, name))
}

as_field_item <- function(value) {
  if (inherits(value, "torch.Tensor")) value else reticulate::py_to_r(value)
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
