// Makes the op library importable as lstm1997._C: importing it runs the static TORCH_LIBRARY
// registrations. The library itself needs no Python (the C++ build links the other sources only).
#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
}
