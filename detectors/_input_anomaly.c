/* The input-anomaly detector's two per-event loops, compiled; detectors/input_anomaly.py's
 * InputAnomalyDetector._py_judge_rows and _py_aggregate stay the reference
 * (tests/unit/test_input_anomaly_kernel.py checks both give the same verdicts, findings and state).
 *
 * judge(scores, positions, events, row, seen, flagged, learned, calibration, calibrated_from, learn_every,
 *       room, threshold_now, learn_score, verdicts, to_learn) -> (row, seen, flagged, learned)
 *   _py_judge_rows from ``row``: judges each scored row against the quantile (``threshold_now``,
 *   ``learn_score``: the quantile's methods), appending (position, anomalous, event) verdicts and the
 *   rows to learn; returns after the row that fills the trees' window (``room`` rows to learn), or at
 *   the end. ``scores`` are floats; ``learn_every`` > 0.
 * aggregate(detector, verdicts, start, prediction_type, window_minutes, minute_ms, min_anomalies, new_principal)
 *     -> (stop, found, judged, flagged)
 *   _py_aggregate over verdicts[start:]: the base rate's counts and each principal's window in
 *   detector._principals (``new_principal(name)`` adds one), asking detector._judge_principal when a
 *   window may alarm. The counts are written to detector._judged and _flagged before each such
 *   question and at the end, as the Python loop does. Stops before a verdict whose event's ``ts`` is
 *   not an int within 64 bits, or cannot be read (nothing of it done): the caller goes on in Python
 *   from there with the returned counts. A principal's bucket holding other numbers (the Python loop
 *   put them there) takes the general path, ``_PrincipalState.add``.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "_slots.h"

enum { F_PRINCIPAL, F_TS, N_FIELDS };
static PyObject *field_names[N_FIELDS];
static PyObject *s_principals, *s_judged, *s_flagged, *s_buckets, *s_events, *s_anomalies, *s_reported,
    *s_move_to_end, *s_judge_principal;


PyDoc_STRVAR(judge_doc,
"judge(scores, positions, events, row, seen, flagged, learned, calibration, calibrated_from, learn_every, room,\n"
"      threshold_now, learn_score, verdicts, to_learn) -> (row, seen, flagged, learned)\n\n"
"InputAnomalyDetector._py_judge_rows from ``row``; see the file's header.");

static int call_with_float(PyObject *function, double value) {
    PyObject *argument = PyFloat_FromDouble(value);
    if (argument == NULL) return -1;
    PyObject *result = PyObject_CallOneArg(function, argument);
    Py_DECREF(argument);
    if (result == NULL) return -1;
    Py_DECREF(result);
    return 0;
}

static PyObject *judge(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 15 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])
        || !PyList_Check(args[13]) || !PyList_Check(args[14])) {
        PyErr_SetString(PyExc_TypeError, "judge(scores: list, positions: list, events: list, row, seen, flagged, learned, "
                                         "calibration, calibrated_from, learn_every, room, threshold_now, learn_score, "
                                         "verdicts: list, to_learn: list)");
        return NULL;
    }
    PyObject *scores = args[0], *positions = args[1], *events = args[2], *threshold_now = args[11],
             *learn_score = args[12], *verdicts = args[13], *to_learn = args[14];
    long long values[8];
    for (int index = 0; index < 8; index++) {
        values[index] = PyLong_AsLongLong(args[3 + index]);
        if (values[index] == -1 && PyErr_Occurred()) return NULL;
    }
    Py_ssize_t row = (Py_ssize_t)values[0];
    long long seen = values[1], flagged = values[2], learned = values[3], calibration = values[4],
              calibrated_from = values[5], learn_every = values[6], room = values[7];
    if (learn_every <= 0 || row < 0) {
        PyErr_SetString(PyExc_ValueError, "judge: learn_every must be positive and row not negative");
        return NULL;
    }
    /* the sizes read anew at each step: the quantile's methods could be Python code */
    for (; row < PyList_GET_SIZE(positions); row++) {
        if (PyList_GET_SIZE(scores) <= row || PyList_GET_SIZE(events) <= row) {
            PyErr_SetString(PyExc_ValueError, "judge: scores and events must cover positions");
            return NULL;
        }
        seen++;
        PyObject *score_object = PyList_GET_ITEM(scores, row);
        if (!PyFloat_CheckExact(score_object)) {
            PyErr_SetString(PyExc_TypeError, "judge: scores must be floats");
            return NULL;
        }
        double score = PyFloat_AS_DOUBLE(score_object);
        if (seen > calibration) {
            PyObject *now = PyObject_CallNoArgs(threshold_now);
            if (now == NULL) return NULL;
            double threshold = 0.0;
            if (now != Py_None) { /* ``threshold_now() or 0.0`` */
                threshold = PyFloat_AsDouble(now);
                if (threshold == -1.0 && PyErr_Occurred()) {
                    Py_DECREF(now);
                    return NULL;
                }
                if (threshold == 0.0) threshold = 0.0; /* -0.0 is falsy too */
            }
            Py_DECREF(now);
            int anomalous = score > threshold;
            if (call_with_float(learn_score, threshold < score ? threshold : score) < 0) return NULL;
            if (PyList_GET_SIZE(positions) <= row || PyList_GET_SIZE(events) <= row) {
                PyErr_SetString(PyExc_ValueError, "judge: the positions or events changed");
                return NULL;
            }
            PyObject *verdict = PyTuple_Pack(3, PyList_GET_ITEM(positions, row), anomalous ? Py_True : Py_False,
                                             PyList_GET_ITEM(events, row));
            if (verdict == NULL) return NULL;
            int appended = PyList_Append(verdicts, verdict);
            Py_DECREF(verdict);
            if (appended < 0) return NULL;
            if (anomalous) { /* anomalous traffic is not learned as normal */
                flagged++;
                continue;
            }
            if (seen % learn_every) continue;
        }
        if (seen > calibrated_from) { /* a learned event's score also calibrates the quantile */
            PyObject *learned_score = call_with_float(learn_score, score) < 0 ? NULL : Py_None;
            if (learned_score == NULL) return NULL;
        }
        PyObject *index = PyLong_FromSsize_t(row);
        if (index == NULL) return NULL;
        int appended = PyList_Append(to_learn, index);
        Py_DECREF(index);
        if (appended < 0) return NULL;
        learned++;
        if (PyList_GET_SIZE(to_learn) == room) {
            row++;
            break;
        }
    }
    return Py_BuildValue("(nLLL)", row, seen, flagged, learned);
}

/* An int attribute of our own state (always an exact int): -1 with a TypeError otherwise. */
static int own_int(PyObject *object, PyObject *name, int64_t *out) {
    PyObject *value = PyObject_GetAttr(object, name);
    if (value == NULL) return -1;
    int status = read_int64(value, out);
    Py_DECREF(value);
    if (status == 1) PyErr_Format(PyExc_TypeError, "%R is not a 64-bit int", name);
    return status == 0 ? 0 : -1;
}

/* ``bucket[index]`` of a window bucket (a list of exact ints), as ``read_int64``: 0, 1 when not such, -1 on error. */
static int bucket_int(PyObject *bucket, Py_ssize_t index, int64_t *out) {
    if (!PyList_CheckExact(bucket) || PyList_GET_SIZE(bucket) <= index) return 1;
    return read_int64(PyList_GET_ITEM(bucket, index), out);
}

/* The common case of a verdict in its principal's window: a normal event in the window's current
 * minute with no minute leaving it (``buckets[-1][1] += 1``, ``events += 1``). 1 done; 0 not the
 * common case (nothing done); -1 on error. */
static int count_in_current_minute(PyObject *principal, PyObject *buckets, int64_t minute, int64_t window_minutes) {
    Py_ssize_t n = PyObject_Size(buckets);
    if (n < 0) return -1;
    if (n == 0) return 0;
    PyObject *newest = PySequence_GetItem(buckets, -1), *oldest = newest == NULL ? NULL : PySequence_GetItem(buckets, 0);
    int status = -1;
    int64_t newest_minute = 0, oldest_minute = 0, count = 0, events = 0;
    if (oldest == NULL) goto done;
    int unread = bucket_int(newest, 0, &newest_minute);
    if (unread == 0) unread = bucket_int(oldest, 0, &oldest_minute);
    if (unread == 0) unread = bucket_int(newest, 1, &count);
    if (unread != 0) { /* a bucket the Python loop filled with other numbers: the general path compares them */
        status = unread < 0 ? -1 : 0;
        goto done;
    }
    if (newest_minute != minute || !(oldest_minute > minute - window_minutes) || count == INT64_MAX) {
        status = 0;
        goto done;
    }
    PyObject *counted = PyLong_FromLongLong(count + 1);
    if (counted == NULL || PyList_SetItem(newest, 1, counted) < 0) goto done;
    if (own_int(principal, s_events, &events) < 0 || set_int64_attr(principal, s_events, events + 1) < 0) goto done;
    status = 1;
done:
    Py_XDECREF(oldest);
    Py_XDECREF(newest);
    return status;
}

/* The verdict's principal, marked as just used, or added by ``new_principal``. */
static PyObject *principal_for(PyObject *principals, PyObject *name, PyObject *new_principal) {
    PyObject *principal = PyDict_GetItemWithError(principals, name);
    if (principal == NULL) return PyErr_Occurred() ? NULL : PyObject_CallOneArg(new_principal, name);
    Py_INCREF(principal);
    PyObject *moved = PyObject_CallMethodOneArg(principals, s_move_to_end, name);
    if (moved == NULL) {
        Py_DECREF(principal);
        return NULL;
    }
    Py_DECREF(moved);
    return principal;
}

static int floor_divide(int64_t ts, int64_t by, int64_t *out) {
    if (by <= 0) {
        PyErr_SetString(PyExc_ValueError, "minute_ms must be positive");
        return -1;
    }
    int64_t quotient = ts / by;
    if ((ts % by != 0) && ((ts < 0) != (by < 0))) quotient--;
    *out = quotient;
    return 0;
}

PyDoc_STRVAR(aggregate_doc,
"aggregate(detector, verdicts, start, prediction_type, window_minutes, minute_ms, min_anomalies, new_principal)\n"
"    -> (stop, found, judged, flagged)\n\n"
"InputAnomalyDetector._py_aggregate over verdicts[start:]; see the file's header.");

static PyObject *aggregate(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8 || !PyList_Check(args[1]) || !PyType_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "aggregate(detector, verdicts: list, start: int, prediction_type: type, "
                                         "window_minutes: int, minute_ms: int, min_anomalies: int, new_principal)");
        return NULL;
    }
    PyObject *detector = args[0], *verdicts = args[1], *new_principal = args[7];
    SlotReader fields;
    if (slots_find(&fields, (PyTypeObject *)args[3], field_names, N_FIELDS) < 0) return NULL;
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    long long window_minutes = PyLong_AsLongLong(args[4]);
    if (window_minutes == -1 && PyErr_Occurred()) return NULL;
    long long minute_ms = PyLong_AsLongLong(args[5]);
    if (minute_ms == -1 && PyErr_Occurred()) return NULL;
    long long min_anomalies = PyLong_AsLongLong(args[6]);
    if (min_anomalies == -1 && PyErr_Occurred()) return NULL;
    if (window_minutes >= INT64_C(1) << 62 || window_minutes <= -(INT64_C(1) << 62)) {
        PyErr_SetString(PyExc_OverflowError, "window_minutes beyond +-2**62");
        return NULL;
    }
    int64_t judged = 0, flagged = 0;
    PyObject *principals = PyObject_GetAttr(detector, s_principals), *found = PyList_New(0), *verdict = NULL;
    if (principals == NULL || found == NULL || own_int(detector, s_judged, &judged) < 0
        || own_int(detector, s_flagged, &flagged) < 0)
        goto fail;
    if (!PyDict_Check(principals)) {
        PyErr_SetString(PyExc_TypeError, "detector._principals must be an OrderedDict");
        goto fail;
    }
    Py_ssize_t index = start < 0 ? 0 : start;
    for (; index < PyList_GET_SIZE(verdicts); index++) {
        Py_XSETREF(verdict, Py_NewRef(PyList_GET_ITEM(verdicts, index))); /* held: the callbacks are Python code */
        if (!PyTuple_Check(verdict) || PyTuple_GET_SIZE(verdict) != 3) {
            PyErr_SetString(PyExc_TypeError, "a verdict is (position, anomalous, event)");
            goto fail;
        }
        PyObject *position = PyTuple_GET_ITEM(verdict, 0), *event = PyTuple_GET_ITEM(verdict, 2);
        PyObject *name = slots_get(&fields, event, F_PRINCIPAL);
        if (name == NULL) goto fail;
        int64_t ts = 0, minute = 0;
        if (name != Py_None) { /* its time first: a verdict left to Python is left whole */
            PyObject *ts_object = slots_get(&fields, event, F_TS);
            if (ts_object == NULL) PyErr_Clear(); /* Python reads it again, in its own order, and raises */
            int unread = ts_object == NULL ? 1 : read_int64(ts_object, &ts);
            Py_XDECREF(ts_object);
            if (unread != 0) {
                Py_DECREF(name);
                if (unread < 0) goto fail;
                break;
            }
            if (floor_divide(ts, minute_ms, &minute) < 0) {
                Py_DECREF(name);
                goto fail;
            }
        }
        int anomalous = PyObject_IsTrue(PyTuple_GET_ITEM(verdict, 1));
        if (anomalous < 0) {
            Py_DECREF(name);
            goto fail;
        }
        judged++;
        flagged += anomalous;
        if (name == Py_None) {
            Py_DECREF(name);
            continue;
        }
        PyObject *principal = principal_for(principals, name, new_principal);
        Py_DECREF(name);
        if (principal == NULL) goto fail;
        PyObject *buckets = PyObject_GetAttr(principal, s_buckets);
        int counted = buckets == NULL ? -1 : anomalous ? 0 : count_in_current_minute(principal, buckets, minute, window_minutes);
        Py_XDECREF(buckets);
        if (counted == 0) { /* principal.add(event.ts, anomalous, window_minutes), the general case */
            PyObject *added = PyObject_CallMethod(principal, "add", "LOL", (long long)ts, anomalous ? Py_True : Py_False,
                                                  window_minutes);
            counted = added == NULL ? -1 : 1;
            Py_XDECREF(added);
        }
        int64_t anomalies = 0;
        PyObject *reported = counted < 0 ? NULL : PyObject_GetAttr(principal, s_reported);
        int was_reported = reported == NULL ? -1 : PyObject_IsTrue(reported);
        Py_XDECREF(reported);
        if (was_reported < 0 || own_int(principal, s_anomalies, &anomalies) < 0) {
            Py_DECREF(principal);
            goto fail;
        }
        if (anomalies < min_anomalies && !was_reported) { /* too few anomalies to alarm, and nothing to re-arm */
            Py_DECREF(principal);
            continue;
        }
        if (set_int64_attr(detector, s_judged, judged) < 0 || set_int64_attr(detector, s_flagged, flagged) < 0) {
            Py_DECREF(principal);
            goto fail;
        }
        PyObject *finding = PyObject_CallMethodObjArgs(detector, s_judge_principal, event, principal, NULL);
        Py_DECREF(principal);
        if (finding == NULL) goto fail;
        int status = 0;
        if (finding != Py_None) {
            PyObject *positioned = PyTuple_Pack(2, position, finding);
            status = positioned == NULL ? -1 : PyList_Append(found, positioned);
            Py_XDECREF(positioned);
        }
        Py_DECREF(finding);
        if (status < 0) goto fail;
    }
    /* done: the base rate's counts written back; left to Python: handed over, as the Python loop keeps them */
    if (index == PyList_GET_SIZE(verdicts)
        && (set_int64_attr(detector, s_judged, judged) < 0 || set_int64_attr(detector, s_flagged, flagged) < 0))
        goto fail;
    Py_XDECREF(verdict);
    Py_DECREF(principals);
    return Py_BuildValue("(nNLL)", index, found, (long long)judged, (long long)flagged);
fail: /* the base rate's counts stay as last written, as the Python loop leaves them */
    Py_XDECREF(verdict);
    Py_XDECREF(principals);
    Py_XDECREF(found);
    return NULL;
}

static PyMethodDef methods[] = {
    {"judge", (PyCFunction)(void (*)(void))judge, METH_FASTCALL, judge_doc},
    {"aggregate", (PyCFunction)(void (*)(void))aggregate, METH_FASTCALL, aggregate_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "detectors._input_anomaly",
    "The input-anomaly detector's per-event loops, compiled (Python twins: _py_judge_rows, _py_aggregate).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__input_anomaly(void) {
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(field_names[F_PRINCIPAL], "principal");
    INTERN(field_names[F_TS], "ts");
    INTERN(s_principals, "_principals");
    INTERN(s_judged, "_judged");
    INTERN(s_flagged, "_flagged");
    INTERN(s_buckets, "buckets");
    INTERN(s_events, "events");
    INTERN(s_anomalies, "anomalies");
    INTERN(s_reported, "reported");
    INTERN(s_move_to_end, "move_to_end");
    INTERN(s_judge_principal, "_judge_principal");
#undef INTERN
    return PyModule_Create(&module);
}
