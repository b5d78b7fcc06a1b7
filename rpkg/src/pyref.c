/* Reads of Python values for R that skip reticulate's generic wrapping.
 *
 * reticulate 1.28 wraps every Python object that reaches R in a new R environment holding
 * `pyobj` (an external pointer that owns one reference) and `convert`, with a class vector it
 * rebuilds each time from the MRO (an import of `inspect`, a call, string building) and then
 * passes through the R class filters by two R-level evaluations: ~75k instructions, the floor of
 * every `ctx$pred` read. Here the same object is made directly (same layout, same finalizer
 * behaviour: drop the reference) with the class vector reticulate gave the first object of that
 * Python type, kept per type (the type is kept alive by the cache, so its address is not reused).
 *
 * Every entry point returns NULL (R's) when it can't answer (Python not loaded, a Python error,
 * a type not seen yet); the R caller then takes reticulate's path, which raises the error or
 * yields the class vector to remember. The Python C API is looked up in the process (reticulate
 * loads libpython with RTLD_GLOBAL) on first use, so loading this package never needs Python.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <R.h>
#include <Rinternals.h>

typedef struct PyObjectOpaque PyObject;
typedef long PySsize;
typedef int GilState;

static struct {
  int tried, ok;
  int (*is_initialized)(void);
  PyObject *(*get_attr)(PyObject *, const char *);
  PyObject *(*get_item)(PyObject *, PyObject *);
  PyObject *(*unicode)(const char *);
  PySsize (*size)(PyObject *);
  PyObject *(*type)(PyObject *);
  void (*incref)(PyObject *);
  void (*decref)(PyObject *);
  void (*err_clear)(void);
  PyObject *(*call)(PyObject *, PyObject *, PyObject *);
  PyObject *(*tuple_new)(PySsize);
  int (*tuple_set)(PyObject *, PySsize, PyObject *);
  PyObject *(*dict_new)(void);
  int (*dict_set)(PyObject *, const char *, PyObject *);
  PyObject *(*from_double)(double);
  PyObject *(*from_long)(long);
  PyObject *(*from_bool)(long);
  void (*err_fetch)(PyObject **, PyObject **, PyObject **);
  void (*err_normalize)(PyObject **, PyObject **, PyObject **);
  int (*set_traceback)(PyObject *, PyObject *);
  PyObject *none;
  GilState (*gil_ensure)(void);
  void (*gil_release)(GilState);
} py;

static SEXP sym_pyobj, sym_convert, sym_error;

static void *find(const char *name) {
  void *f = dlsym(RTLD_DEFAULT, name);
  if (f == NULL) py.ok = 0;
  return f;
}

static int python_ready(void) {
  if (!py.tried) {
    py.tried = 1;
    py.ok = 1;
    py.is_initialized = (int (*)(void))find("Py_IsInitialized");
    py.get_attr = (PyObject * (*)(PyObject *, const char *)) find("PyObject_GetAttrString");
    py.get_item = (PyObject * (*)(PyObject *, PyObject *)) find("PyObject_GetItem");
    py.unicode = (PyObject * (*)(const char *)) find("PyUnicode_FromString");
    py.size = (PySsize(*)(PyObject *))find("PyObject_Size");
    py.type = (PyObject * (*)(PyObject *)) find("PyObject_Type");
    py.incref = (void (*)(PyObject *))find("Py_IncRef");
    py.decref = (void (*)(PyObject *))find("Py_DecRef");
    py.err_clear = (void (*)(void))find("PyErr_Clear");
    py.call = (PyObject * (*)(PyObject *, PyObject *, PyObject *)) find("PyObject_Call");
    py.tuple_new = (PyObject * (*)(PySsize)) find("PyTuple_New");
    py.tuple_set = (int (*)(PyObject *, PySsize, PyObject *))find("PyTuple_SetItem");
    py.dict_new = (PyObject * (*)(void)) find("PyDict_New");
    py.dict_set = (int (*)(PyObject *, const char *, PyObject *))find("PyDict_SetItemString");
    py.from_double = (PyObject * (*)(double)) find("PyFloat_FromDouble");
    py.from_long = (PyObject * (*)(long)) find("PyLong_FromLong");
    py.from_bool = (PyObject * (*)(long)) find("PyBool_FromLong");
    py.err_fetch = (void (*)(PyObject **, PyObject **, PyObject **))find("PyErr_Fetch");
    py.err_normalize = (void (*)(PyObject **, PyObject **, PyObject **))find("PyErr_NormalizeException");
    py.set_traceback = (int (*)(PyObject *, PyObject *))find("PyException_SetTraceback");
    py.none = (PyObject *)find("_Py_NoneStruct");
    py.gil_ensure = (GilState(*)(void))find("PyGILState_Ensure");
    py.gil_release = (void (*)(GilState))find("PyGILState_Release");
    sym_pyobj = Rf_install("pyobj");
    sym_convert = Rf_install("convert");
    sym_error = Rf_install("pyluz_error");
    if (!py.ok) py.tried = 0; /* Python not loaded yet: look again next time */
  }
  return py.ok && py.is_initialized();
}

/* The PyObject behind a reticulate reference (an environment with `pyobj`), or NULL. */
static PyObject *unwrap(SEXP x) {
  if (TYPEOF(x) != ENVSXP) return NULL;
  SEXP ptr = Rf_findVarInFrame(x, sym_pyobj);
  if (TYPEOF(ptr) != EXTPTRSXP) return NULL;
  return (PyObject *)R_ExternalPtrAddr(ptr);
}

static void release(SEXP ptr) {
  PyObject *obj = (PyObject *)R_ExternalPtrAddr(ptr);
  if (obj != NULL && py.decref != NULL) {
    GilState g = py.gil_ensure();
    py.decref(obj);
    py.gil_release(g);
  }
  R_ClearExternalPtr(ptr);
}

/* The cache keys of a Python type: "t<address>" for its class vector, "h<address>" for the
 * reference that keeps the type (and so its address) alive. */
static SEXP type_key(PyObject *type, char tag) {
  char buf[32];
  snprintf(buf, sizeof buf, "%c%p", tag, (void *)type);
  return Rf_install(buf);
}

/* reticulate's R object for `obj` (a new reference it takes over): an environment holding `pyobj`,
 * an external pointer whose finalizer drops the reference, and `convert`; class `cls`. */
static SEXP reference_env(PyObject *obj, SEXP convert, SEXP cls) {
  SEXP env = PROTECT(R_NewEnv(R_EmptyEnv, FALSE, 0));
  SEXP ptr = PROTECT(R_MakeExternalPtr(obj, R_NilValue, R_NilValue));
  R_RegisterCFinalizer(ptr, release);
  Rf_defineVar(sym_pyobj, ptr, env);
  Rf_defineVar(sym_convert, Rf_ScalarLogical(Rf_asLogical(convert)), env);
  Rf_setAttrib(env, R_ClassSymbol, cls);
  UNPROTECT(2);
  return env;
}

/* Wraps `obj` (a new reference, given away) like reticulate would, or returns NULL (and drops
 * the reference) when no class vector is known yet for its type. */
static SEXP wrap(PyObject *obj, SEXP convert, SEXP classes) {
  PyObject *type = py.type(obj);
  SEXP known = Rf_findVarInFrame(classes, type_key(type, 't'));
  py.decref(type);
  if (TYPEOF(known) != STRSXP) {
    py.decref(obj);
    return R_NilValue;
  }
  return reference_env(obj, convert, known);
}

static SEXP convert_of(SEXP x) {
  SEXP convert = Rf_findVarInFrame(x, sym_convert);
  return TYPEOF(convert) == LGLSXP ? convert : Rf_ScalarLogical(TRUE);
}

/* A new reference read from `owner`, wrapped with owner's `convert`; NULL (the error cleared)
 * when the read failed. */
static SEXP wrap_result(PyObject *value, SEXP owner, SEXP classes) {
  if (value == NULL) {
    py.err_clear();
    return R_NilValue;
  }
  return wrap(value, convert_of(owner), classes);
}

/* len(x) as an R integer. */
SEXP pyluz_py_len(SEXP x) {
  if (!python_ready()) return R_NilValue;
  PyObject *obj = unwrap(x);
  if (obj == NULL) return R_NilValue;
  GilState g = py.gil_ensure();
  PySsize n = py.size(obj);
  if (n < 0) py.err_clear();
  py.gil_release(g);
  if (n < 0 || n > 2147483647L) return R_NilValue;
  return Rf_ScalarInteger((int)n);
}

/* getattr(x, name), wrapped with x's `convert`. */
SEXP pyluz_py_attr(SEXP x, SEXP name, SEXP classes) {
  if (!python_ready()) return R_NilValue;
  PyObject *obj = unwrap(x);
  if (obj == NULL) return R_NilValue;
  GilState g = py.gil_ensure();
  SEXP out = wrap_result(py.get_attr(obj, CHAR(STRING_ELT(name, 0))), x, classes);
  py.gil_release(g);
  return out;
}

/* x[key] for a string key, wrapped with x's `convert`. */
SEXP pyluz_py_item(SEXP x, SEXP key, SEXP classes) {
  if (!python_ready()) return R_NilValue;
  PyObject *obj = unwrap(x);
  if (obj == NULL) return R_NilValue;
  GilState g = py.gil_ensure();
  PyObject *k = py.unicode(Rf_translateCharUTF8(STRING_ELT(key, 0)));
  PyObject *value = k == NULL ? NULL : py.get_item(obj, k);
  if (k != NULL) py.decref(k);
  SEXP out = wrap_result(value, x, classes);
  py.gil_release(g);
  return out;
}

static int is_tensor_class(SEXP classes) {
  for (R_xlen_t i = 0; i < XLENGTH(classes); i++) {
    if (strcmp(CHAR(STRING_ELT(classes, i)), "torch.Tensor") == 0) return 1;
  }
  return 0;
}

/* list(x[k] for k in keys), named by `keys`, when every item is a tensor of a known type (the
 * loss dict every batch); NULL otherwise, and the caller reads the items through reticulate. */
SEXP pyluz_py_tensor_items(SEXP x, SEXP keys, SEXP classes) {
  if (!python_ready() || TYPEOF(keys) != STRSXP) return R_NilValue;
  PyObject *obj = unwrap(x);
  if (obj == NULL) return R_NilValue;
  R_xlen_t n = XLENGTH(keys);
  SEXP out = PROTECT(Rf_allocVector(VECSXP, n));
  GilState g = py.gil_ensure();
  int ok = 1;
  for (R_xlen_t i = 0; ok && i < n; i++) {
    PyObject *k = py.unicode(Rf_translateCharUTF8(STRING_ELT(keys, i)));
    PyObject *value = k == NULL ? NULL : py.get_item(obj, k);
    if (k != NULL) py.decref(k);
    if (value == NULL) {
      py.err_clear();
      ok = 0;
      break;
    }
    SEXP item = wrap(value, convert_of(x), classes);
    if (item == R_NilValue || !is_tensor_class(Rf_getAttrib(item, R_ClassSymbol))) ok = 0;
    else SET_VECTOR_ELT(out, i, item);
  }
  py.gil_release(g);
  if (ok) Rf_setAttrib(out, R_NamesSymbol, keys);
  UNPROTECT(1);
  return ok ? out : R_NilValue;
}

/* An R object the way reticulate's object would be, but with the class "pyluz_bare": for a value of
 * a type seen for the first time, or (attribute `pyluz_error`) a raised exception. R hands it back
 * to reticulate (pyref.R). */
static SEXP bare(PyObject *obj, SEXP convert, int is_error) {
  SEXP cls = PROTECT(Rf_allocVector(STRSXP, 2));
  SET_STRING_ELT(cls, 0, Rf_mkChar("pyluz_bare"));
  SET_STRING_ELT(cls, 1, Rf_mkChar("python.builtin.object"));
  SEXP env = PROTECT(reference_env(obj, convert, cls));
  if (is_error) Rf_setAttrib(env, sym_error, Rf_ScalarLogical(1));
  UNPROTECT(2);
  return env;
}

/* One R argument as a new Python reference, as reticulate would convert it, for the kinds the
 * R-torch layer passes every call: NULL, a Python object, a plain length-one double, integer,
 * logical or string. NULL (C's) for anything else, NA included: reticulate then converts all. */
static PyObject *to_python(SEXP v) {
  if (TYPEOF(v) == NILSXP) {
    py.incref(py.none);
    return py.none;
  }
  if (TYPEOF(v) == ENVSXP) {
    if (!Rf_inherits(v, "python.builtin.object") || Rf_getAttrib(v, Rf_install("py_object")) != R_NilValue)
      return NULL;
    PyObject *obj = unwrap(v);
    if (obj != NULL) py.incref(obj);
    return obj;
  }
  int type = TYPEOF(v);
  if ((type != REALSXP && type != INTSXP && type != LGLSXP && type != STRSXP) || ATTRIB(v) != R_NilValue ||
      XLENGTH(v) != 1)
    return NULL;
  switch (type) {
  case REALSXP:
    return py.from_double(REAL(v)[0]);
  case INTSXP:
    return INTEGER(v)[0] == NA_INTEGER ? NULL : py.from_long(INTEGER(v)[0]);
  case LGLSXP:
    return LOGICAL(v)[0] == NA_LOGICAL ? NULL : py.from_bool(LOGICAL(v)[0]);
  case STRSXP:
    return STRING_ELT(v, 0) == NA_STRING ? NULL : py.unicode(Rf_translateCharUTF8(STRING_ELT(v, 0)));
  default:
    return NULL;
  }
}

/* The positional tuple and keyword dict of a call, or 0 (nothing allocated) when an argument is
 * not one to_python() converts. */
static int call_arguments(SEXP args, SEXP kwargs, PyObject **tuple, PyObject **dict) {
  R_xlen_t n = TYPEOF(args) == VECSXP ? XLENGTH(args) : 0;
  R_xlen_t nk = TYPEOF(kwargs) == VECSXP ? XLENGTH(kwargs) : 0;
  SEXP names = Rf_getAttrib(kwargs, R_NamesSymbol);
  if ((TYPEOF(args) != VECSXP && args != R_NilValue) || (TYPEOF(kwargs) != VECSXP && kwargs != R_NilValue) ||
      (nk > 0 && TYPEOF(names) != STRSXP))
    return 0;
  *tuple = py.tuple_new(n);
  *dict = NULL;
  for (R_xlen_t i = 0; i < n; i++) {
    PyObject *arg = to_python(VECTOR_ELT(args, i));
    if (arg == NULL) {
      py.decref(*tuple);
      return 0;
    }
    py.tuple_set(*tuple, i, arg); /* steals arg */
  }
  if (nk > 0) {
    *dict = py.dict_new();
    for (R_xlen_t i = 0; i < nk; i++) {
      PyObject *arg = to_python(VECTOR_ELT(kwargs, i));
      if (arg == NULL) {
        py.decref(*tuple);
        py.decref(*dict);
        return 0;
      }
      py.dict_set(*dict, Rf_translateChar(STRING_ELT(names, i)), arg);
      py.decref(arg);
    }
  }
  return 1;
}

/* f(*args, **kwargs), as reticulate's py_call_impl() would make it, for the R-torch layer's calls.
 * NULL (R's) when an argument needs reticulate's conversion (nothing was called); the result
 * wrapped with f's `convert`; a "pyluz_bare" object for a result of a new type or an exception. */
SEXP pyluz_py_call(SEXP f, SEXP args, SEXP kwargs, SEXP classes) {
  if (!python_ready()) return R_NilValue;
  PyObject *fn = unwrap(f);
  if (fn == NULL) return R_NilValue;
  GilState g = py.gil_ensure();
  PyObject *tuple, *dict;
  SEXP out = R_NilValue;
  if (call_arguments(args, kwargs, &tuple, &dict)) {
    SEXP convert = PROTECT(convert_of(f));
    PyObject *value = py.call(fn, tuple, dict);
    py.decref(tuple);
    if (dict != NULL) py.decref(dict);
    if (value == NULL) {
      PyObject *type, *error, *trace;
      py.err_fetch(&type, &error, &trace);
      py.err_normalize(&type, &error, &trace);
      if (error == NULL) { /* no exception object: report None, not a crash */
        py.incref(py.none);
        error = py.none;
      } else if (trace != NULL) {
        py.set_traceback(error, trace);
      }
      if (type != NULL) py.decref(type);
      if (trace != NULL) py.decref(trace);
      out = bare(error, convert, 1);
    } else {
      py.incref(value); /* wrap() gives one reference away even when it declines */
      out = wrap(value, convert, classes);
      if (out == R_NilValue) out = bare(value, convert, 0);
      else py.decref(value);
    }
    UNPROTECT(1);
  }
  py.gil_release(g);
  return out;
}

/* Remembers `class(x)` (as reticulate made it) for x's Python type; holds the type. */
SEXP pyluz_py_remember_class(SEXP x, SEXP classes) {
  if (!python_ready()) return R_NilValue;
  PyObject *obj = unwrap(x);
  if (obj == NULL) return R_NilValue;
  GilState g = py.gil_ensure();
  PyObject *type = py.type(obj); /* the reference the cache keeps */
  SEXP key = type_key(type, 't');
  if (TYPEOF(Rf_findVarInFrame(classes, key)) == STRSXP) {
    py.decref(type);
  } else {
    SEXP keep = PROTECT(R_MakeExternalPtr(type, R_NilValue, R_NilValue));
    R_RegisterCFinalizer(keep, release);
    Rf_defineVar(type_key(type, 'h'), keep, classes);
    SEXP known = Rf_getAttrib(x, R_ClassSymbol);
    MARK_NOT_MUTABLE(known); /* shared by every object wrapped here */
    Rf_defineVar(key, known, classes);
    UNPROTECT(1);
  }
  py.gil_release(g);
  return R_NilValue;
}
