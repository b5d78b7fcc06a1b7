/* Registers the package's C entry points (pyref.c). */
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>

SEXP pyluz_py_len(SEXP x);
SEXP pyluz_py_attr(SEXP x, SEXP name, SEXP classes);
SEXP pyluz_py_item(SEXP x, SEXP key, SEXP classes);
SEXP pyluz_py_tensor_items(SEXP x, SEXP keys, SEXP classes);
SEXP pyluz_py_call(SEXP f, SEXP args, SEXP kwargs, SEXP classes);
SEXP pyluz_py_remember_class(SEXP x, SEXP classes);

static const R_CallMethodDef entries[] = {
  {"C_py_len", (DL_FUNC)&pyluz_py_len, 1},
  {"C_py_attr", (DL_FUNC)&pyluz_py_attr, 3},
  {"C_py_item", (DL_FUNC)&pyluz_py_item, 3},
  {"C_py_tensor_items", (DL_FUNC)&pyluz_py_tensor_items, 3},
  {"C_py_call", (DL_FUNC)&pyluz_py_call, 4},
  {"C_py_remember_class", (DL_FUNC)&pyluz_py_remember_class, 2},
  {NULL, NULL, 0}
};

void R_init_pyluz(DllInfo *dll) {
  R_registerRoutines(dll, NULL, entries, NULL, NULL);
  R_useDynamicSymbols(dll, FALSE);
}
