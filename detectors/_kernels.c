/* Compiled inner loops of the detectors: the same arithmetic as their Python versions, without
 * the interpreter's cost per value.
 *
 * Each function here has a Python twin that stays the reference (detectors/_regime.py's
 * _py_cusum_run, detectors/_columns.py's _py_gather); tests/unit/test_kernels.py checks that both
 * give identical results, bit for bit, on random and hostile input. The detectors import this
 * module when it was built (`pip install` builds it) and use the Python twins otherwise. Nothing
 * here keeps state, reads a clock or does I/O: these are pure functions of their arguments.
 *
 * cusum_run(up, down, standardised, slack, threshold): both sides of a CUSUM over a float64 buffer
 *   of standardised values, each side's gain ``x - slack`` and ``-x - slack``, until one side
 *   exceeds ``threshold``; see _regime._py_cusum_run.
 * gather(maps, names): the ``names`` values of every dict in ``maps``, row by row, as a bytearray
 *   of float64; None if any value is not a plain float or int (the caller's Python path then
 *   decides), KeyError if a dict lacks a name.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyDoc_STRVAR(cusum_run_doc,
"cusum_run(up, down, standardised, slack, threshold) -> (last, up, down, up_start, down_start)\n\n"
"Both CUSUM sides stepped over ``standardised`` (a float64 buffer) until one exceeds ``threshold``\n"
"(>= 0) or the values end; as detectors._regime._py_cusum_run.");

static PyObject *cusum_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "cusum_run(up, down, standardised, slack, threshold)");
        return NULL;
    }
    double up = PyFloat_AsDouble(args[0]);
    double down = PyFloat_AsDouble(args[1]);
    double slack = PyFloat_AsDouble(args[3]);
    double threshold = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (view.itemsize != sizeof(double) || view.format == NULL || strcmp(view.format, "d") != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "cusum_run: standardised must be a contiguous float64 buffer");
        return NULL;
    }
    const double *values = (const double *)view.buf;
    Py_ssize_t n = view.len / (Py_ssize_t)sizeof(double), up_start = -1, down_start = -1, index;
    for (index = 0; index < n; index++) {
        double x = values[index];
        double up_gain = x - slack, down_gain = -x - slack;
        if (up > 0.0) {
            up += up_gain;
        } else {
            up = up_gain;
            up_start = index;
        }
        if (down > 0.0) {
            down += down_gain;
        } else {
            down = down_gain;
            down_start = index;
        }
        if (up > threshold || down > threshold) break;
    }
    PyBuffer_Release(&view);
    Py_ssize_t last = index < n ? index : n - 1;
    return Py_BuildValue("(nddnn)", last, up, down, up_start, down_start);
}

PyDoc_STRVAR(gather_doc,
"gather(maps, names) -> bytearray | None\n\n"
"The ``names`` values of each dict in the list ``maps``, row after row, as float64 bytes. None when\n"
"a map is not a dict or a value is not a plain float or int; KeyError(name) when a dict lacks one.");

static PyObject *gather(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "gather(maps: list, names: tuple)");
        return NULL;
    }
    PyObject *maps = args[0], *names = args[1];
    Py_ssize_t n_maps = PyList_GET_SIZE(maps), n_names = PyTuple_GET_SIZE(names);
    if (n_names > 0 && n_maps > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(double) / n_names) return PyErr_NoMemory();
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n_maps * n_names * (Py_ssize_t)sizeof(double));
    if (out == NULL) return NULL;
    double *cell = (double *)PyByteArray_AS_STRING(out);
    for (Py_ssize_t row = 0; row < n_maps; row++) {
        PyObject *map = PyList_GET_ITEM(maps, row);
        if (!PyDict_CheckExact(map)) goto decline;
        for (Py_ssize_t column = 0; column < n_names; column++) {
            PyObject *name = PyTuple_GET_ITEM(names, column);
            PyObject *value = PyDict_GetItemWithError(map, name); /* borrowed */
            if (value == NULL) {
                if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, name);
                Py_DECREF(out);
                return NULL;
            }
            if (PyFloat_CheckExact(value)) {
                *cell++ = PyFloat_AS_DOUBLE(value);
            } else if (PyLong_CheckExact(value)) {
                double converted = PyLong_AsDouble(value); /* float(value): OverflowError beyond double */
                if (converted == -1.0 && PyErr_Occurred()) {
                    PyErr_Clear();
                    goto decline;
                }
                *cell++ = converted;
            } else {
                goto decline;
            }
        }
    }
    return out;
decline:
    Py_DECREF(out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"cusum_run", (PyCFunction)(void (*)(void))cusum_run, METH_FASTCALL, cusum_run_doc},
    {"gather", (PyCFunction)(void (*)(void))gather, METH_FASTCALL, gather_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "detectors._kernels",
    "Compiled inner loops of the detectors (each with a Python twin; see the file's header).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
