/* Reading an object's fields straight from its slots: for the compiled detector loops, which read
 * the same few fields of every event (a slots dataclass such as PredictionEvent); and reading and
 * writing the 64-bit ints they keep in their own state. Included by each extension that needs it
 * (static functions: one copy per module). */
#ifndef MLSENTRY_SLOTS_H
#define MLSENTRY_SLOTS_H

#include <Python.h>
#include <structmember.h>
#include <stdint.h>

#define MAX_SLOT_FIELDS 8

typedef struct {
    PyTypeObject *type;                  /* the type whose slots are read directly */
    PyObject *const *names;              /* the fields' names (interned), ``n`` of them */
    int n;
    Py_ssize_t offsets[MAX_SLOT_FIELDS]; /* each field's slot offset in ``type``; 0: looked up instead */
} SlotReader;

/* Finds ``names``' slots in ``type``: 0, or -1 with an exception. */
static int slots_find(SlotReader *reader, PyTypeObject *type, PyObject *const *names, int n) {
    if (n > MAX_SLOT_FIELDS) {
        PyErr_SetString(PyExc_SystemError, "too many slot fields");
        return -1;
    }
    reader->type = type;
    reader->names = names;
    reader->n = n;
    for (int which = 0; which < n; which++) {
        reader->offsets[which] = 0;
        PyObject *descriptor = PyObject_GetAttr((PyObject *)type, names[which]);
        if (descriptor == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
            PyErr_Clear();
            continue;
        }
        if (Py_IS_TYPE(descriptor, &PyMemberDescr_Type) && ((PyMemberDescrObject *)descriptor)->d_common.d_type == type
            && ((PyMemberDescrObject *)descriptor)->d_member->type == T_OBJECT_EX)
            reader->offsets[which] = ((PyMemberDescrObject *)descriptor)->d_member->offset;
        Py_DECREF(descriptor);
    }
    return 0;
}

/* ``object.<names[which]>`` (a new reference): read from its slot when ``object`` is exactly the
 * reader's type (a subclass might define the name otherwise), else looked up, which also raises
 * the AttributeError of an unset slot. */
static PyObject *slots_get(const SlotReader *reader, PyObject *object, int which) {
    if (Py_IS_TYPE(object, reader->type) && reader->offsets[which] > 0) {
        PyObject *value = *(PyObject **)((char *)object + reader->offsets[which]);
        if (value != NULL) return Py_NewRef(value);
    }
    return PyObject_GetAttr(object, reader->names[which]);
}

/* ``value`` as int64 into *out: 0; 1 (no exception: the caller leaves it to Python or complains) when it
 * is not an exact int or does not fit in 64 bits; -1 on an error. */
static inline int read_int64(PyObject *value, int64_t *out) {
    if (!PyLong_CheckExact(value)) return 1;
    int overflow = 0;
    long long converted = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (converted == -1 && PyErr_Occurred()) return -1;
    if (overflow) return 1;
    *out = (int64_t)converted;
    return 0;
}

/* ``object.<name> = value`` for an int64: 0, or -1 with an exception. */
static inline int set_int64_attr(PyObject *object, PyObject *name, int64_t value) {
    PyObject *boxed = PyLong_FromLongLong(value);
    if (boxed == NULL) return -1;
    int status = PyObject_SetAttr(object, name, boxed);
    Py_DECREF(boxed);
    return status;
}

#endif
