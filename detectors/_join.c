/* The feedback join's batch loop, compiled: detectors/feedback.py's FeedbackJoin._py_feed, which stays
 * the reference (tests/unit/test_join_kernel.py checks both give the same matches and leave the join
 * in the same state, on random streams and on hostile ones).
 *
 * feed(join, events, start, matches, prediction_type, matched_type, positive_labels) -> int
 *   Feeds events[start:] to ``join`` as FeedbackJoin._py_feed does (``remember`` for a prediction,
 *   ``match`` for a label, expiry and eviction included), appending a ``matched_type`` (a tuple
 *   subclass: Matched) for each label matched. Returns len(events) when done, or the position of
 *   the first event whose ``ts`` is not an int within +-2**62 (nothing of it done; ``start`` when a number
 *   the join holds does): the caller feeds the rest in Python and keeps the join there
 *   (FeedbackJoin._wide). Within that range no sum or difference here can overflow 64 bits, and
 *   every ``ts`` the join remembers was checked on the way in.
 *
 * The join's state is read from its attributes at the start and written back before returning
 * (also on an exception, as the Python loop would have left it): _pending (an OrderedDict, changed
 * only through its own mapping and methods so its order stays right), _watermark, _keep_until,
 * _front_id, max_entries, horizon_ms and counts.{joined, missed, expired, evicted}.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_slots.h"
#include <stdint.h>

#define SAFE_TS (INT64_C(1) << 62)

/* The event fields read here (``field_names``, read through ``JoinState.event``). */
enum { F_TS, F_LABEL, F_FEATURES, F_EVENT_ID, F_PREDICTION, F_SCORE, N_FIELDS };
static PyObject *field_names[N_FIELDS];

typedef struct {
    SlotReader event;                /* the prediction type's fields */
    PyObject *join, *counts, *pending, *front_id; /* front_id: a strong reference (None: none) */
    int64_t watermark, keep_until, horizon, max_entries, joined, missed, expired, evicted;
    int loaded;
} JoinState;

static PyObject *s_pending, *s_watermark, *s_keep_until, *s_front_id, *s_max_entries, *s_horizon_ms, *s_counts,
    *s_joined, *s_missed, *s_expired, *s_evicted, *s_strip, *s_lower, *s_popitem, *s_move_to_end;

/* ``value`` as int64 into *out: 0; 1 (no exception: left to Python) when it is not an exact int or lies
 * beyond +-2**62; -1 on an error. */
static int as_int64(PyObject *value, int64_t *out) {
    int64_t converted = 0;
    int status = read_int64(value, &converted);
    if (status != 0) return status;
    if (converted >= SAFE_TS || converted <= -SAFE_TS) return 1;
    *out = converted;
    return 0;
}

/* An int attribute as int64, as ``as_int64``; -1 also when it is absent. */
static int int64_attr(PyObject *object, PyObject *name, int64_t *out) {
    PyObject *value = PyObject_GetAttr(object, name);
    if (value == NULL) return -1;
    int status = as_int64(value, out);
    Py_DECREF(value);
    return status;
}

/* The ``ts`` of a remembered prediction: every one was checked on the way in (FeedbackJoin._wide). */
static int remembered_ts(JoinState *state, PyObject *prediction, int64_t *out) {
    PyObject *value = slots_get(&state->event, prediction, F_TS);
    if (value == NULL) return -1;
    int status = as_int64(value, out);
    Py_DECREF(value);
    if (status > 0) PyErr_SetString(PyExc_OverflowError, "a remembered prediction's ts is not an int within +-2**62");
    return status ? -1 : 0;
}


/* 0 loaded; 1 some number is not an int within +-2**62 (nothing held); -1 on error (nothing held). */
static int load(JoinState *state, PyObject *join) {
    state->counts = state->pending = state->front_id = NULL; /* slots_find has set ``event`` */
    state->loaded = 0;
    state->join = join;
    int status = -1;
    if ((state->pending = PyObject_GetAttr(join, s_pending)) == NULL) goto fail;
    if (!PyDict_Check(state->pending)) {
        PyErr_SetString(PyExc_TypeError, "join._pending must be an OrderedDict");
        goto fail;
    }
    if ((state->counts = PyObject_GetAttr(join, s_counts)) == NULL) goto fail;
    if ((state->front_id = PyObject_GetAttr(join, s_front_id)) == NULL) goto fail;
    struct { PyObject *owner, *name; int64_t *out; } numbers[] = {
        {join, s_watermark, &state->watermark}, {join, s_keep_until, &state->keep_until},
        {join, s_horizon_ms, &state->horizon}, {join, s_max_entries, &state->max_entries},
        {state->counts, s_joined, &state->joined}, {state->counts, s_missed, &state->missed},
        {state->counts, s_expired, &state->expired}, {state->counts, s_evicted, &state->evicted},
    };
    for (size_t index = 0; index < sizeof(numbers) / sizeof(numbers[0]); index++) {
        if ((status = int64_attr(numbers[index].owner, numbers[index].name, numbers[index].out)) != 0) goto fail;
    }
    state->loaded = 1;
    return 0;
fail:
    Py_CLEAR(state->pending);
    Py_CLEAR(state->counts);
    Py_CLEAR(state->front_id);
    return status;
}

/* Writes a loaded state back (keeping an exception already raised) and lets go of its references. */
static int store(JoinState *state) {
    if (!state->loaded) return PyErr_Occurred() ? -1 : 0;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    int status = (set_int64_attr(state->join, s_watermark, state->watermark) < 0
                  || set_int64_attr(state->join, s_keep_until, state->keep_until) < 0
                  || PyObject_SetAttr(state->join, s_front_id, state->front_id) < 0
                  || set_int64_attr(state->counts, s_joined, state->joined) < 0
                  || set_int64_attr(state->counts, s_missed, state->missed) < 0
                  || set_int64_attr(state->counts, s_expired, state->expired) < 0
                  || set_int64_attr(state->counts, s_evicted, state->evicted) < 0) ? -1 : 0;
    Py_CLEAR(state->pending);
    Py_CLEAR(state->counts);
    Py_CLEAR(state->front_id);
    state->loaded = 0;
    if (type != NULL) {
        PyErr_Restore(type, value, traceback); /* the first error wins, as in Python */
        return -1;
    }
    return status;
}

/* 1 when ``key`` equals the oldest's id, 0 when not, -1 on error. */
static int is_front(JoinState *state, PyObject *key) {
    if (state->front_id == Py_None) return 0;
    return PyObject_RichCompareBool(key, state->front_id, Py_EQ);
}

static int set_front(JoinState *state, PyObject *key) {
    Py_INCREF(key);
    Py_SETREF(state->front_id, key);
    return 0;
}

static int pop_oldest(JoinState *state) {
    PyObject *popped = PyObject_CallMethodOneArg(state->pending, s_popitem, Py_False);
    if (popped == NULL) return -1;
    Py_DECREF(popped);
    return 0;
}

/* FeedbackJoin._expire: forget what fell out of the horizon; note the new oldest and until when it stays. */
static int expire(JoinState *state) {
    int64_t horizon_start = state->watermark - state->horizon;
    while (PyDict_GET_SIZE(state->pending) > 0) {
        PyObject *keys = PyObject_GetIter(state->pending);
        if (keys == NULL) return -1;
        PyObject *key = PyIter_Next(keys);
        Py_DECREF(keys);
        if (key == NULL) return PyErr_Occurred() ? -1 : 0;
        PyObject *oldest = PyDict_GetItemWithError(state->pending, key); /* borrowed */
        int64_t oldest_ts = 0;
        if (oldest == NULL) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
            Py_DECREF(key);
            return -1;
        }
        if (remembered_ts(state, oldest, &oldest_ts) < 0) {
            Py_DECREF(key);
            return -1;
        }
        if (oldest_ts >= horizon_start) {
            set_front(state, key);
            Py_DECREF(key);
            state->keep_until = oldest_ts + state->horizon;
            return 0;
        }
        Py_DECREF(key);
        if (pop_oldest(state) < 0) return -1;
        state->expired++;
    }
    set_front(state, Py_None);
    state->keep_until = -1;
    return 0;
}

/* FeedbackJoin.remember, after the watermark moved: insert at the back, then evict or expire. */
static int remember(JoinState *state, PyObject *event, PyObject *event_id) {
    int front = is_front(state, event_id);
    if (front < 0) return -1;
    if (front) state->keep_until = -1; /* the oldest is remembered anew, at the back */
    Py_ssize_t size = PyDict_GET_SIZE(state->pending);
    if (PyObject_SetItem(state->pending, event_id, event) < 0) return -1;
    if (PyDict_GET_SIZE(state->pending) == size) { /* an event_id seen again counts as the newest */
        PyObject *moved = PyObject_CallMethodOneArg(state->pending, s_move_to_end, event_id);
        if (moved == NULL) return -1;
        Py_DECREF(moved);
    } else if (size >= state->max_entries) {
        while (PyDict_GET_SIZE(state->pending) > state->max_entries) {
            if (pop_oldest(state) < 0) return -1;
            state->evicted++;
        }
        state->keep_until = -1;
    }
    return state->watermark > state->keep_until ? expire(state) : 0;
}

/* ``text.strip().lower()`` (a new reference). */
static PyObject *normalised(PyObject *text) {
    PyObject *stripped = PyObject_CallMethodNoArgs(text, s_strip);
    if (stripped == NULL) return NULL;
    PyObject *lowered = PyObject_CallMethodNoArgs(stripped, s_lower);
    Py_DECREF(stripped);
    return lowered;
}

/* detectors.feedback.is_error, in its order of evaluation: 1, 0, or -1 on error. */
static int is_error(JoinState *state, PyObject *prediction, PyObject *label, PyObject *positive_labels) {
    PyObject *predicted = slots_get(&state->event, prediction, F_PREDICTION);
    if (predicted == NULL) return -1;
    int result = -1;
    PyObject *predicted_norm = NULL, *label_norm = NULL, *score = NULL, *as_float = NULL;
    if (predicted != Py_None) {
        if ((predicted_norm = normalised(predicted)) != NULL && (label_norm = normalised(label)) != NULL)
            result = PyObject_RichCompareBool(predicted_norm, label_norm, Py_NE);
    } else if ((score = slots_get(&state->event, prediction, F_SCORE)) != NULL) {
        if (score == Py_None || (as_float = PyNumber_Float(score)) != NULL) { /* float(score), 0.0 for None */
            double value = as_float == NULL ? 0.0 : PyFloat_AS_DOUBLE(as_float);
            int positive = (label_norm = normalised(label)) == NULL ? -1 : PySet_Contains(positive_labels, label_norm);
            if (positive >= 0) result = (value >= 0.5) != positive;
        }
    }
    Py_XDECREF(as_float);
    Py_XDECREF(score);
    Py_XDECREF(label_norm);
    Py_XDECREF(predicted_norm);
    Py_DECREF(predicted);
    return result;
}

/* FeedbackJoin.match and the Matched it makes: 0 (matched or not), -1 on error. */
static int match(JoinState *state, Py_ssize_t position, PyObject *feedback, PyObject *label, PyObject *ts_object,
                 int64_t ts, PyObject *matches, PyObject *matched_type, PyObject *positive_labels) {
    if (ts > state->watermark) state->watermark = ts;
    PyObject *event_id = slots_get(&state->event, feedback, F_EVENT_ID);
    if (event_id == NULL) return -1;
    int front = is_front(state, event_id);
    if (front < 0) goto fail;
    if (front) state->keep_until = -1;
    PyObject *prediction = PyDict_GetItemWithError(state->pending, event_id); /* borrowed */
    if (prediction == NULL) {
        if (PyErr_Occurred()) goto fail;
        state->missed++;
        Py_DECREF(event_id);
        return 0;
    }
    Py_INCREF(prediction);
    if (PyObject_DelItem(state->pending, event_id) < 0) goto fail_prediction;
    Py_DECREF(event_id);
    event_id = NULL;
    int64_t prediction_ts = 0;
    if (remembered_ts(state, prediction, &prediction_ts) < 0) goto fail_prediction;
    if (ts - prediction_ts > state->horizon) {
        state->expired++;
        Py_DECREF(prediction);
        return 0;
    }
    state->joined++;
    int error = is_error(state, prediction, label, positive_labels);
    if (error < 0) goto fail_prediction;
    PyObject *fields = Py_BuildValue("(nOOOLLLO)", position, prediction, label, ts_object, (long long)state->joined,
                                     (long long)state->missed, (long long)(state->expired + state->evicted),
                                     error ? Py_True : Py_False);
    Py_DECREF(prediction);
    if (fields == NULL) return -1;
    PyObject *args = PyTuple_Pack(1, fields);
    Py_DECREF(fields);
    if (args == NULL) return -1;
    PyObject *matched = PyTuple_Type.tp_new((PyTypeObject *)matched_type, args, NULL);
    Py_DECREF(args);
    if (matched == NULL) return -1;
    int status = PyList_Append(matches, matched);
    Py_DECREF(matched);
    return status;
fail_prediction:
    Py_DECREF(prediction);
fail:
    Py_XDECREF(event_id);
    return -1;
}

/* One event: 0 done, 1 its ts is out of range (nothing done), -1 on error. */
static int feed_one(JoinState *state, Py_ssize_t position, PyObject *event, PyObject *matches, PyObject *matched_type,
                    PyObject *positive_labels) {
    PyObject *ts_object = slots_get(&state->event, event, F_TS);
    if (ts_object == NULL) return -1;
    int64_t ts = 0;
    int range = as_int64(ts_object, &ts);
    if (range != 0) {
        Py_DECREF(ts_object);
        return range < 0 ? -1 : 1;
    }
    PyObject *label = slots_get(&state->event, event, F_LABEL);
    if (label == NULL) goto fail_ts;
    int is_prediction = label == Py_None;
    if (!is_prediction) {
        PyObject *features = slots_get(&state->event, event, F_FEATURES);
        if (features == NULL) goto fail_label;
        is_prediction = PyObject_IsTrue(features);
        Py_DECREF(features);
        if (is_prediction < 0) goto fail_label;
    }
    int status;
    if (is_prediction) {
        if (ts > state->watermark) state->watermark = ts;
        PyObject *event_id = slots_get(&state->event, event, F_EVENT_ID);
        if (event_id == NULL) goto fail_label;
        /* remember's common case: a new id, room left, the oldest not yet due to expire */
        int fast = state->watermark <= state->keep_until && PyDict_GET_SIZE(state->pending) < state->max_entries;
        if (fast) {
            int known = PyDict_Contains(state->pending, event_id);
            int front = known ? 0 : is_front(state, event_id);
            if (known < 0 || front < 0) {
                Py_DECREF(event_id);
                goto fail_label;
            }
            fast = !known && !front;
        }
        status = fast ? PyObject_SetItem(state->pending, event_id, event) : remember(state, event, event_id);
        Py_DECREF(event_id);
    } else {
        status = match(state, position, event, label, ts_object, ts, matches, matched_type, positive_labels);
    }
    Py_DECREF(label);
    Py_DECREF(ts_object);
    return status;
fail_label:
    Py_DECREF(label);
fail_ts:
    Py_DECREF(ts_object);
    return -1;
}

PyDoc_STRVAR(feed_doc,
"feed(join, events, start, matches, prediction_type, matched_type, positive_labels) -> int\n\n"
"FeedbackJoin._py_feed over events[start:], appending to ``matches``; the position of the first event\n"
"whose ts is not an int within +-2**62 (left undone), else len(events). See the file's header.");

static PyObject *feed(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyList_Check(args[3]) || !PyType_Check(args[4]) || !PyType_Check(args[5])
        || !PyType_IsSubtype((PyTypeObject *)args[5], &PyTuple_Type) || !PyAnySet_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "feed(join, events, start: int, matches: list, prediction_type: type, "
                        "matched_type: tuple subclass, positive_labels: frozenset)");
        return NULL;
    }
    PyObject *join = args[0], *matches = args[3], *matched_type = args[5], *positive_labels = args[6];
    PyTypeObject *prediction_type = (PyTypeObject *)args[4];
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    PyObject *sequence = PySequence_Fast(args[1], "events must be a sequence");
    if (sequence == NULL) return NULL;
    JoinState state;
    Py_ssize_t position = start < 0 ? 0 : start;
    int loaded = slots_find(&state.event, prediction_type, field_names, N_FIELDS) < 0 ? -1 : load(&state, join);
    if (loaded != 0) { /* 1: the join holds a number the loop does not take: all of it is left to Python */
        Py_DECREF(sequence);
        return loaded < 0 ? NULL : PyLong_FromSsize_t(position);
    }
    /* the size read anew and the event held at each step: Python code (a __hash__, an __eq__) may change the list */
    for (; position < PySequence_Fast_GET_SIZE(sequence); position++) {
        PyObject *event = Py_NewRef(PySequence_Fast_GET_ITEM(sequence, position));
        int status = PyObject_TypeCheck(event, prediction_type) ? 1 : PyObject_IsInstance(event, (PyObject *)prediction_type);
        if (status > 0) status = feed_one(&state, position, event, matches, matched_type, positive_labels);
        Py_DECREF(event);
        if (status < 0) goto fail;
        if (status > 0) break;
    }
    Py_DECREF(sequence);
    if (store(&state) < 0) return NULL;
    return PyLong_FromSsize_t(position);
fail:
    Py_DECREF(sequence);
    store(&state);
    return NULL;
}

static PyMethodDef methods[] = {
    {"feed", (PyCFunction)(void (*)(void))feed, METH_FASTCALL, feed_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "detectors._join",
    "The feedback join's batch loop, compiled (its Python twin is FeedbackJoin._py_feed).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__join(void) {
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_pending, "_pending");
    INTERN(s_watermark, "_watermark");
    INTERN(s_keep_until, "_keep_until");
    INTERN(s_front_id, "_front_id");
    INTERN(s_max_entries, "max_entries");
    INTERN(s_horizon_ms, "horizon_ms");
    INTERN(s_counts, "counts");
    INTERN(s_joined, "joined");
    INTERN(s_missed, "missed");
    INTERN(s_expired, "expired");
    INTERN(s_evicted, "evicted");
    INTERN(field_names[F_TS], "ts");
    INTERN(field_names[F_LABEL], "label");
    INTERN(field_names[F_FEATURES], "features");
    INTERN(field_names[F_EVENT_ID], "event_id");
    INTERN(field_names[F_PREDICTION], "prediction");
    INTERN(field_names[F_SCORE], "score");
    INTERN(s_strip, "strip");
    INTERN(s_lower, "lower");
    INTERN(s_popitem, "popitem");
    INTERN(s_move_to_end, "move_to_end");
#undef INTERN
    return PyModule_Create(&module);
}
