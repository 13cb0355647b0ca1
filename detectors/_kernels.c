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
 * ranks(values, distinct, below, n): each value's mid-rank in a reference of ``n`` values, given as its
 *   distinct values (sorted, +inf last) and how many values lie below each; see
 *   _regime.RankCusum._py_ranks.
 * walk(rows, n_features, split_features, split_thresholds, n_trees, height): each row's leaf in each
 *   half-space tree, as a bytearray of int64 (rows x trees); see _halfspace.HalfSpaceForest._py_leaves.
 * group(events, prediction_type, featureless): a batch's predictions by (model_id, model_version), as
 *   {key: ([positions], [events])} in first-seen order, feedback left out; the keys of predictions
 *   without features added to the set ``featureless``; see batch.Batch._py_group.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "_slots.h"

/* A contiguous float64 view of ``object``, or -1 with a TypeError naming ``what``. */
static int float64_buffer(PyObject *object, Py_buffer *view, const char *what) {
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize == sizeof(double) && view->format != NULL && strcmp(view->format, "d") == 0) return 0;
    PyBuffer_Release(view);
    PyErr_Format(PyExc_TypeError, "%s must be a contiguous float64 buffer", what);
    return -1;
}

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
    if (float64_buffer(args[2], &view, "standardised") < 0) return NULL;
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

PyDoc_STRVAR(ranks_doc,
"ranks(values, distinct, below, n) -> bytearray\n\n"
"Each value's (bisect_left + bisect_right) / (2 n) in a sorted reference of n values, as float64: the\n"
"reference given as its distinct values (float64, sorted, +inf last) and, for each and one past the\n"
"last, how many values lie below it (int32). As _regime.RankCusum._py_ranks.");

static PyObject *ranks(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "ranks(values, distinct, below, n)");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[3]);
    if (n == -1 && PyErr_Occurred()) return NULL;
    Py_buffer values, distinct, below;
    if (float64_buffer(args[0], &values, "values") < 0) return NULL;
    if (float64_buffer(args[1], &distinct, "distinct") < 0) {
        PyBuffer_Release(&values);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &below, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&distinct);
        PyBuffer_Release(&values);
        return NULL;
    }
    PyObject *out = NULL;
    Py_ssize_t n_values = values.len / (Py_ssize_t)sizeof(double), n_distinct = distinct.len / (Py_ssize_t)sizeof(double);
    const double *value = (const double *)values.buf, *level = (const double *)distinct.buf;
    const int32_t *count_below = (const int32_t *)below.buf;
    if (below.itemsize != sizeof(int32_t) || below.format == NULL || strcmp(below.format, "i") != 0) {
        PyErr_SetString(PyExc_TypeError, "ranks: below must be a contiguous int32 buffer");
        goto done;
    }
    if (n < 1 || n_distinct < 1 || below.len / (Py_ssize_t)sizeof(int32_t) != n_distinct + 1 ||
        level[n_distinct - 1] != INFINITY) {
        PyErr_SetString(PyExc_ValueError, "ranks: a reference is its distinct values, +inf last, and one count more");
        goto done;
    }
    out = PyByteArray_FromStringAndSize(NULL, n_values * (Py_ssize_t)sizeof(double));
    if (out == NULL) goto done;
    double *rank = (double *)PyByteArray_AS_STRING(out), twice_n = (double)(2 * (int64_t)n);
    for (Py_ssize_t i = 0; i < n_values; i++) {
        double v = value[i];
        if (isnan(v)) { /* a rank CUSUM never sees NaN; refuse it rather than rank it anywhere */
            Py_CLEAR(out);
            PyErr_SetString(PyExc_ValueError, "ranks: a value is NaN");
            goto done;
        }
        Py_ssize_t low = 0, high = n_distinct - 1; /* the first level >= v: the +inf at the end always is */
        while (low < high) {
            Py_ssize_t middle = low + (high - low) / 2;
            if (level[middle] < v) low = middle + 1;
            else high = middle;
        }
        int64_t left = count_below[low];
        int64_t both = 2 * left + (level[low] == v ? (int64_t)count_below[low + 1] - left : 0);
        rank[i] = (double)both / twice_n;
    }
done:
    PyBuffer_Release(&below);
    PyBuffer_Release(&distinct);
    PyBuffer_Release(&values);
    return out;
}

PyDoc_STRVAR(walk_doc,
"walk(rows, n_features, split_features, split_thresholds, n_trees, height) -> bytearray\n\n"
"Each row's leaf in each tree, int64, row after row. ``rows`` is a float64 buffer of rows of\n"
"``n_features``; the splits are int64 and float64 buffers of every level's nodes, level after level\n"
"(level d holds n_trees * 2**d nodes); a node k of level d goes to child 2k if the row's value of its\n"
"feature is below its threshold, else 2k + 1. As _halfspace.HalfSpaceForest._py_leaves.");


static PyObject *walk(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "walk(rows, n_features, split_features, split_thresholds, n_trees, height)");
        return NULL;
    }
    Py_ssize_t n_features = PyLong_AsSsize_t(args[1]), n_trees = PyLong_AsSsize_t(args[4]);
    Py_ssize_t height = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred()) return NULL;
    if (n_features < 1 || n_trees < 1 || height < 0 || height > 30) {
        PyErr_SetString(PyExc_ValueError, "walk: n_features and n_trees must be positive, height in 0..30");
        return NULL;
    }
    if (n_trees > PY_SSIZE_T_MAX / ((Py_ssize_t)1 << height)) {
        PyErr_SetString(PyExc_ValueError, "walk: too many nodes");
        return NULL;
    }
    Py_buffer rows, features, thresholds;
    if (float64_buffer(args[0], &rows, "rows") < 0) return NULL;
    if (PyObject_GetBuffer(args[2], &features, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&rows);
        return NULL;
    }
    if (float64_buffer(args[3], &thresholds, "split_thresholds") < 0) {
        PyBuffer_Release(&features);
        PyBuffer_Release(&rows);
        return NULL;
    }
    PyObject *out = NULL;
    Py_ssize_t n_nodes = n_trees * (((Py_ssize_t)1 << height) - 1);
    Py_ssize_t n_values = rows.len / (Py_ssize_t)sizeof(double), n_rows = n_values / n_features;
    const int64_t *feature = (const int64_t *)features.buf;
    const double *threshold = (const double *)thresholds.buf, *values = (const double *)rows.buf;
    if (features.itemsize != sizeof(int64_t) || features.format == NULL ||
        (strcmp(features.format, "l") != 0 && strcmp(features.format, "q") != 0)) {
        PyErr_SetString(PyExc_TypeError, "walk: split_features must be a contiguous int64 buffer");
        goto done;
    }
    if (features.len / (Py_ssize_t)sizeof(int64_t) != n_nodes || thresholds.len / (Py_ssize_t)sizeof(double) != n_nodes ||
        n_rows * n_features != n_values) {
        PyErr_SetString(PyExc_ValueError, "walk: the buffers' sizes do not fit n_features, n_trees and height");
        goto done;
    }
    for (Py_ssize_t node = 0; node < n_nodes; node++) {
        if (feature[node] < 0 || feature[node] >= n_features) {
            PyErr_SetString(PyExc_ValueError, "walk: a split feature is not a column of the rows");
            goto done;
        }
    }
    if (n_rows > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(int64_t) / n_trees) {
        PyErr_NoMemory();
        goto done;
    }
    out = PyByteArray_FromStringAndSize(NULL, n_rows * n_trees * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) goto done;
    int64_t *leaf = (int64_t *)PyByteArray_AS_STRING(out);
    for (Py_ssize_t row = 0; row < n_rows; row++) {
        const double *value = values + row * n_features;
        for (Py_ssize_t tree = 0; tree < n_trees; tree++) {
            int64_t node = tree;
            Py_ssize_t level_start = 0, level_size = n_trees;
            for (Py_ssize_t depth = 0; depth < height; depth++) {
                Py_ssize_t at = level_start + node;
                node = 2 * node + (value[feature[at]] < threshold[at] ? 0 : 1);
                level_start += level_size;
                level_size *= 2;
            }
            *leaf++ = node;
        }
    }
done:
    PyBuffer_Release(&thresholds);
    PyBuffer_Release(&features);
    PyBuffer_Release(&rows);
    return out;
}

enum { G_FEATURES, G_LABEL, G_MODEL_ID, G_MODEL_VERSION, G_FIELDS };
static PyObject *group_names[G_FIELDS];

PyDoc_STRVAR(group_doc,
"group(events, prediction_type, featureless) -> dict\n\n"
"The predictions among ``events`` by (model_id, model_version): {key: ([positions], [events])}, keys in\n"
"first-seen order, feedback (a label and no features) left out; adds the keys of predictions without\n"
"features to ``featureless`` (a set). As batch.Batch._py_group.");

/* Appends ``position`` and ``event`` to ``group`` (a ([positions], [events]) tuple): 0, or -1. */
static int add_to_group(PyObject *group, Py_ssize_t position, PyObject *event) {
    PyObject *index = PyLong_FromSsize_t(position);
    if (index == NULL) return -1;
    int status = PyList_Append(PyTuple_GET_ITEM(group, 0), index) < 0 || PyList_Append(PyTuple_GET_ITEM(group, 1), event) < 0
                     ? -1 : 0;
    Py_DECREF(index);
    return status;
}

static PyObject *group(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyType_Check(args[1]) || !PySet_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "group(events, prediction_type: type, featureless: set)");
        return NULL;
    }
    SlotReader fields;
    PyTypeObject *prediction_type = (PyTypeObject *)args[1];
    if (slots_find(&fields, prediction_type, group_names, G_FIELDS) < 0) return NULL;
    PyObject *sequence = PySequence_Fast(args[0], "events must be a sequence");
    if (sequence == NULL) return NULL;
    PyObject *groups = PyDict_New();
    /* the last event's model strings and group: consecutive predictions of a version share the objects */
    PyObject *last_id = NULL, *last_version = NULL, *last_group = NULL, *model_id = NULL, *model_version = NULL,
             *event = NULL;
    if (groups == NULL) goto fail;
    for (Py_ssize_t position = 0; position < PySequence_Fast_GET_SIZE(sequence); position++) {
        /* held for the step: Python code (a features mapping's __bool__) may change the list */
        Py_XSETREF(event, Py_NewRef(PySequence_Fast_GET_ITEM(sequence, position)));
        int prediction = PyObject_TypeCheck(event, prediction_type) ? 1 : PyObject_IsInstance(event, args[1]);
        if (prediction <= 0) {
            if (prediction < 0) goto fail;
            continue;
        }
        PyObject *features = slots_get(&fields, event, G_FEATURES);
        if (features == NULL) goto fail;
        int has_features = PyObject_IsTrue(features);
        Py_DECREF(features);
        if (has_features < 0) goto fail;
        if (!has_features) {
            PyObject *label = slots_get(&fields, event, G_LABEL);
            if (label == NULL) goto fail;
            int feedback = label != Py_None;
            Py_DECREF(label);
            if (feedback) continue; /* a label for an earlier prediction */
        }
        if ((model_id = slots_get(&fields, event, G_MODEL_ID)) == NULL
            || (model_version = slots_get(&fields, event, G_MODEL_VERSION)) == NULL)
            goto fail;
        if (has_features && model_id == last_id && model_version == last_version) {
            Py_CLEAR(model_id);
            Py_CLEAR(model_version);
            if (add_to_group(last_group, position, event) < 0) goto fail;
            continue;
        }
        PyObject *key = PyTuple_Pack(2, model_id, model_version);
        if (key == NULL) goto fail;
        if (!has_features && PySet_Add(args[2], key) < 0) {
            Py_DECREF(key);
            goto fail;
        }
        PyObject *found = PyDict_GetItemWithError(groups, key); /* borrowed */
        if (found == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(key);
                goto fail;
            }
            PyObject *positions = PyList_New(0), *members = PyList_New(0);
            found = positions == NULL || members == NULL ? NULL : PyTuple_Pack(2, positions, members);
            Py_XDECREF(positions);
            Py_XDECREF(members);
            if (found == NULL || PyDict_SetItem(groups, key, found) < 0) {
                Py_XDECREF(found);
                Py_DECREF(key);
                goto fail;
            }
            Py_DECREF(found); /* the dict holds it */
        }
        Py_DECREF(key);
        if (add_to_group(found, position, event) < 0) goto fail;
        Py_XSETREF(last_id, model_id);
        Py_XSETREF(last_version, model_version);
        model_id = model_version = NULL;
        last_group = found;
    }
    Py_XDECREF(event);
    Py_XDECREF(last_id);
    Py_XDECREF(last_version);
    Py_DECREF(sequence);
    return groups;
fail:
    Py_XDECREF(event);
    Py_XDECREF(model_id);
    Py_XDECREF(model_version);
    Py_XDECREF(last_id);
    Py_XDECREF(last_version);
    Py_XDECREF(groups);
    Py_DECREF(sequence);
    return NULL;
}

static PyMethodDef methods[] = {
    {"group", (PyCFunction)(void (*)(void))group, METH_FASTCALL, group_doc},
    {"cusum_run", (PyCFunction)(void (*)(void))cusum_run, METH_FASTCALL, cusum_run_doc},
    {"gather", (PyCFunction)(void (*)(void))gather, METH_FASTCALL, gather_doc},
    {"walk", (PyCFunction)(void (*)(void))walk, METH_FASTCALL, walk_doc},
    {"ranks", (PyCFunction)(void (*)(void))ranks, METH_FASTCALL, ranks_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "detectors._kernels",
    "Compiled inner loops of the detectors (each with a Python twin; see the file's header).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) {
    const char *names[G_FIELDS] = {"features", "label", "model_id", "model_version"};
    for (int which = 0; which < G_FIELDS; which++)
        if ((group_names[which] = PyUnicode_InternFromString(names[which])) == NULL) return NULL;
    return PyModule_Create(&module);
}
