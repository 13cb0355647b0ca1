/* The extraction detector's hot loop, compiled: detectors/extraction.py's ExtractionDetector._py_learn_run,
 * which stays the reference (tests/unit/test_extraction_kernel.py checks both leave the same findings
 * and the same state, on random streams and on hostile ones).
 *
 * learn_run(detector, model_key, positions, events, start, population, last, found, last_touch, prediction_type,
 *           settings)
 *     -> (stop, population, last)
 *   Learns events[start:] of one model version as _py_learn_run does: each scored prediction
 *   into its principal's window and sweep and into the version's population share, asking the
 *   detector's own methods for what is rare (a new principal or population, a signal, a
 *   finding). ``population`` and ``last`` are the loop's running values (None and -1 at first).
 *   Stops early at an event it leaves to Python: a score other than a float or int, a feature map
 *   other than a dict of floats and ints, or a value beyond what 64 bits hold (only the version's
 *   population is looked up for it). The caller resumes _py_learn_run at ``stop`` with the
 *   returned running values.
 *   ``settings``: (band, max_features, min_predictions, min_population, min_fraction, crowd,
 *   sweep_length, max_interleaved), the detector's, as numbers.
 *
 * Reads a PredictionEvent's slots directly (_slots.h) when the event is exactly that type; the detector's
 * states (_PrincipalState, _Sweep) are read and written through their attributes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_slots.h"
#include <math.h>
#include <stdint.h>

enum { F_SCORE, F_PRINCIPAL, F_TS, F_FEATURES, N_FIELDS };
static PyObject *field_names[N_FIELDS];
static PyObject *s_recent, *s_near, *s_last_features, *s_last_ts, *s_sweep, *s_flagged_until, *s_maxlen, *s_append,
    *s_length, *s_anchor, *s_misses, *s_feature, *s_direction, *s_last_value, *s_start_ts, *s_first_value,
    *s_move_to_end, *s_get, *s_update, *s_ewmean, *s_new_principal, *s_sweep_signal,
    *s_boundary_signal, *s_flag, *s_population_for, *one, *zero, *one_float, *zero_float, *absent;

typedef struct {
    SlotReader event; /* the prediction type's fields */
    double band, max_features, min_predictions, min_population, min_fraction, crowd, sweep_length, max_interleaved;
} Run;

/* Status of a step: done, left to Python (nothing done), or an error raised. */
enum { DONE = 0, DECLINE = 1, FAILED = -1 }; /* read_int64's own codes (detectors/_slots.h) */


/* An int attribute of the detector's own state as int64 (DONE/DECLINE/FAILED); any integer type (a
 * numpy score learned by the Python loop makes a near count a numpy int) is taken by its __index__. */
static int int_attr(PyObject *object, PyObject *name, int64_t *out) {
    PyObject *value = PyObject_GetAttr(object, name);
    if (value == NULL) return FAILED;
    PyObject *integer = PyLong_CheckExact(value) ? Py_NewRef(value) : PyNumber_Index(value);
    Py_DECREF(value);
    if (integer == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) return FAILED;
        PyErr_Clear();
        return DECLINE;
    }
    int status = read_int64(integer, out);
    Py_DECREF(integer);
    return status;
}

/* ``a != b`` as Python evaluates it (1, 0, or -1 on error); doubles compared directly. */
static int not_equal(PyObject *a, PyObject *b) {
    if (PyFloat_CheckExact(a) && PyFloat_CheckExact(b)) return PyFloat_AS_DOUBLE(a) != PyFloat_AS_DOUBLE(b);
    PyObject *result = PyObject_RichCompare(a, b, Py_NE);
    if (result == NULL) return -1;
    int truth = PyObject_IsTrue(result);
    Py_DECREF(result);
    return truth;
}

/* Sets attributes of ``sweep`` to a new run or a longer one; values are borrowed. */
static int set_anchor(PyObject *sweep, PyObject *current, PyObject *last_value) {
    PyObject *anchor = PyDict_Copy(current);
    if (anchor == NULL) return -1;
    int status = (PyObject_SetAttr(sweep, s_last_value, last_value) < 0 || PyObject_SetAttr(sweep, s_anchor, anchor) < 0
                  || PyObject_SetAttr(sweep, s_misses, zero) < 0) ? -1 : 0;
    Py_DECREF(anchor);
    return status;
}

/* extraction._continue_sweep: 1 (true), 0 (false), -1 on error. ``length`` is sweep.length. */
static int continue_sweep(PyObject *sweep, int64_t length, PyObject *current, double max_interleaved) {
    if (!length) return 0;
    PyObject *anchor = PyObject_GetAttr(sweep, s_anchor);
    if (anchor == NULL) return -1;
    int result = 0;
    PyObject *feature = NULL, *changed = NULL; /* changed: the first changed feature, or NULL */
    Py_ssize_t n_changed = 0;
    if (anchor == Py_None) goto done;
    if (!PyDict_CheckExact(anchor)) { /* anchor.keys() != current.keys(), the generic way */
        PyObject *anchor_keys = PyObject_CallMethod(anchor, "keys", NULL);
        PyObject *current_keys = anchor_keys == NULL ? NULL : PyObject_CallMethod(current, "keys", NULL);
        int differ = current_keys == NULL ? -1 : not_equal(anchor_keys, current_keys);
        Py_XDECREF(anchor_keys);
        Py_XDECREF(current_keys);
        if (differ) {
            result = differ < 0 ? -1 : 0;
            goto done;
        }
    } else { /* dict key views compare as sets */
        if (PyDict_GET_SIZE(anchor) != PyDict_GET_SIZE(current)) goto done;
        Py_ssize_t cursor = 0;
        PyObject *name, *value;
        while (PyDict_Next(current, &cursor, &name, &value)) {
            int has = PyDict_Contains(anchor, name);
            if (has <= 0) {
                result = has < 0 ? -1 : 0;
                goto done;
            }
        }
    }
    Py_ssize_t cursor = 0, size = PyDict_GET_SIZE(current);
    PyObject *name, *value;
    while (PyDict_Next(current, &cursor, &name, &value)) { /* [name for name in current if current[name] != anchor[name]] */
        Py_INCREF(name); /* held: a value's __ne__ may change the dict */
        Py_INCREF(value);
        PyObject *anchored = PyObject_GetItem(anchor, name);
        int differs = anchored == NULL ? -1 : not_equal(value, anchored);
        Py_XDECREF(anchored);
        Py_DECREF(value);
        if (differs > 0 && n_changed++ == 0) {
            changed = name; /* the reference moves to ``changed`` */
        } else {
            Py_DECREF(name);
        }
        if (differs >= 0 && PyDict_GET_SIZE(current) != size) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            differs = -1;
        }
        if (differs < 0) {
            result = -1;
            goto done;
        }
    }
    if (n_changed == 0) {
        result = 1; /* a repeated query neither extends nor breaks a sweep */
        goto done;
    }
    if ((feature = PyObject_GetAttr(sweep, s_feature)) == NULL) {
        result = -1;
        goto done;
    }
    int same = n_changed == 1 ? PyObject_RichCompareBool(changed, feature, Py_EQ) : 0;
    if (same < 0) {
        result = -1;
        goto done;
    }
    if (same) {
        /* (current[f] - anchor[f]) * sweep.direction < 0: the swept feature turned back */
        PyObject *now = PyObject_GetItem(current, feature), *then = now == NULL ? NULL : PyObject_GetItem(anchor, feature);
        PyObject *direction = then == NULL ? NULL : PyObject_GetAttr(sweep, s_direction);
        PyObject *step = direction == NULL ? NULL : PyNumber_Subtract(now, then);
        PyObject *signed_step = step == NULL ? NULL : PyNumber_Multiply(step, direction);
        int back = signed_step == NULL ? -1 : PyObject_RichCompareBool(signed_step, zero, Py_LT);
        if (back == 0)
            back = (set_int64_attr(sweep, s_length, length + 1) < 0 || set_anchor(sweep, current, now) < 0) ? -1 : 0;
        Py_XDECREF(signed_step);
        Py_XDECREF(step);
        Py_XDECREF(direction);
        Py_XDECREF(then);
        Py_XDECREF(now);
        result = back < 0 ? -1 : !back;
        goto done;
    }
    int64_t misses = 0; /* other features moved: another query of the principal's, skipped */
    int status = int_attr(sweep, s_misses, &misses);
    if (status != DONE || misses == INT64_MAX) {
        if (status == DECLINE) PyErr_SetString(PyExc_OverflowError, "sweep.misses is not a 64-bit int");
        result = -1;
        goto done;
    }
    result = set_int64_attr(sweep, s_misses, misses + 1) < 0 ? -1 : (double)(misses + 1) <= max_interleaved;
done:
    Py_XDECREF(changed);
    Py_XDECREF(feature);
    Py_DECREF(anchor);
    return result;
}

/* ``previous.get(feature)`` as a new reference; NULL without an exception when absent. */
static PyObject *value_before(PyObject *previous, PyObject *feature) {
    if (PyDict_CheckExact(previous)) return Py_XNewRef(PyDict_GetItemWithError(previous, feature));
    PyObject *value = PyObject_CallMethodObjArgs(previous, s_get, feature, absent, NULL);
    if (value == absent) Py_CLEAR(value);
    return value;
}

/* extraction._extend_sweep: 0, or -1 on error. ``length`` is sweep.length; ``current`` a dict, ``previous``
 * any mapping (the last features of the principal). */
static int extend_sweep(PyObject *sweep, int64_t length, PyObject *previous, PyObject *current, PyObject *last_ts) {
    PyObject *name = NULL; /* the one feature that moved (a strong reference), or NULL */
    Py_ssize_t cursor = 0, size = PyDict_GET_SIZE(current);
    PyObject *feature, *value;
    while (PyDict_Next(current, &cursor, &feature, &value)) {
        Py_INCREF(feature); /* held: a value's __ne__ or a mapping's get may change the dict */
        Py_INCREF(value);
        PyObject *before = value_before(previous, feature);
        int differs = before == NULL ? (PyErr_Occurred() ? -1 : 1) : not_equal(value, before);
        Py_XDECREF(before);
        Py_DECREF(value);
        if (differs >= 0 && PyDict_GET_SIZE(current) != size) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            differs = -1;
        }
        if (differs <= 0 || name != NULL) {
            Py_DECREF(feature);
            if (differs < 0) {
                Py_XDECREF(name);
                return -1;
            }
            if (differs && name != NULL) { /* a second feature moved */
                Py_DECREF(name);
                return set_int64_attr(sweep, s_length, 0);
            }
            continue;
        }
        name = feature;
    }
    Py_ssize_t previous_size = PyObject_Size(previous);
    int known = previous_size < 0 ? -1 : previous_size != PyDict_GET_SIZE(current) ? 0
                : name == NULL ? 2 : PySequence_Contains(previous, name);
    if (known != 1) { /* an error; not the same features; or a repeated query, which neither extends nor breaks */
        Py_XDECREF(name);
        return known < 0 ? -1 : known == 2 ? 0 : set_int64_attr(sweep, s_length, 0);
    }
    PyObject *then = PyObject_GetItem(previous, name), *now = Py_XNewRef(PyDict_GetItemWithError(current, name));
    if (then == NULL || now == NULL) {
        Py_XDECREF(then);
        Py_XDECREF(now);
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, name);
        Py_DECREF(name);
        return -1;
    }
    int status = -1, up = PyObject_RichCompareBool(now, then, Py_GT);
    PyObject *direction = NULL, *feature_now = NULL, *direction_now = NULL;
    if (up < 0) goto done;
    direction = PyLong_FromLong(up ? 1 : -1);
    if (direction == NULL) goto done;
    int extends = 0;
    if (length) {
        if ((feature_now = PyObject_GetAttr(sweep, s_feature)) == NULL) goto done;
        int same_feature = PyObject_RichCompareBool(feature_now, name, Py_EQ);
        if (same_feature < 0) goto done;
        if (same_feature) {
            if ((direction_now = PyObject_GetAttr(sweep, s_direction)) == NULL) goto done;
            if ((extends = PyObject_RichCompareBool(direction_now, direction, Py_EQ)) < 0) goto done;
        }
    }
    if (extends) {
        if (set_int64_attr(sweep, s_length, length + 1) < 0) goto done;
    } else if (PyObject_SetAttr(sweep, s_feature, name) < 0 || PyObject_SetAttr(sweep, s_direction, direction) < 0
               || PyObject_SetAttr(sweep, s_length, one) < 0 || PyObject_SetAttr(sweep, s_start_ts, last_ts) < 0
               || PyObject_SetAttr(sweep, s_first_value, then) < 0) {
        goto done;
    }
    status = set_anchor(sweep, current, now);
done:
    Py_XDECREF(direction_now);
    Py_XDECREF(feature_now);
    Py_XDECREF(direction);
    Py_DECREF(now);
    Py_DECREF(then);
    Py_DECREF(name);
    return status;
}

/* Everything the loop carries from event to event. */
typedef struct {
    PyObject *detector, *model_key, *found, *last_touch, *principals;
    PyObject *population;   /* None until the run's first scored prediction, then (EWMean, [n]) */
    PyObject *share_update; /* the population share's update: the compiled EWMean's, or EWMean.update */
    Py_ssize_t last;
} Loop;

/* The share's update of ``loop->population``: its compiled EWMean's when River wraps one, else its own. */
static int find_share_update(Loop *loop) {
    if (!PyTuple_Check(loop->population) || PyTuple_GET_SIZE(loop->population) != 2) {
        PyErr_SetString(PyExc_TypeError, "a population is (EWMean, [n])");
        return -1;
    }
    PyObject *share = PyTuple_GET_ITEM(loop->population, 0);
    PyObject *compiled = PyObject_GetAttr(share, s_ewmean);
    if (compiled == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
        PyErr_Clear(); /* not River's wrapper: its own update */
    }
    PyObject *update = PyObject_GetAttr(compiled != NULL ? compiled : share, s_update);
    Py_XDECREF(compiled);
    if (update == NULL) return -1;
    Py_XSETREF(loop->share_update, update);
    return 0;
}

/* The version's population, looked up (or made) by the detector at the run's first scored prediction. */
static int take_population(Loop *loop) {
    PyObject *population = PyObject_CallMethodOneArg(loop->detector, s_population_for, loop->model_key);
    if (population == NULL) return -1;
    Py_SETREF(loop->population, population);
    return find_share_update(loop);
}

/* population[1][0] as int64: DONE, DECLINE (not a list holding an exact int), FAILED. */
static int population_count(Loop *loop, int64_t *out) {
    PyObject *counter = PyTuple_GET_ITEM(loop->population, 1);
    if (!PyList_CheckExact(counter) || PyList_GET_SIZE(counter) < 1) return DECLINE;
    return read_int64(PyList_GET_ITEM(counter, 0), out);
}

/* extraction._learn_population: population[0].update(1.0 or 0.0); population[1][0] += 1. */
static int learn_share(Loop *loop, int near, int64_t count) {
    PyObject *learned = PyObject_CallOneArg(loop->share_update, near ? one_float : zero_float);
    if (learned == NULL) return -1;
    Py_DECREF(learned);
    PyObject *counted = PyLong_FromLongLong(count + 1);
    if (counted == NULL) return -1;
    return PyList_SetItem(PyTuple_GET_ITEM(loop->population, 1), 0, counted);
}

/* The principal's state, looked up in (or added to) the detector's LRU table. */
static PyObject *principal_state(Loop *loop, PyObject *key) {
    PyObject *state = PyDict_GetItemWithError(loop->principals, key);
    if (state == NULL) {
        return PyErr_Occurred() ? NULL : PyObject_CallMethodOneArg(loop->detector, s_new_principal, key);
    }
    Py_INCREF(state);
    PyObject *moved = PyObject_CallMethodOneArg(loop->principals, s_move_to_end, key);
    if (moved == NULL) {
        Py_DECREF(state);
        return NULL;
    }
    Py_DECREF(moved);
    return state;
}

/* A signal for the principal, flagged into a finding (or not); the finding appended at ``position``. */
static int report(Loop *loop, Py_ssize_t position, PyObject *event, PyObject *state, PyObject *signal) {
    if (signal == Py_None) return 0;
    PyObject *finding = PyObject_CallMethodObjArgs(loop->detector, s_flag, state, event, signal, NULL);
    if (finding == NULL) return -1;
    int status = 0;
    if (finding != Py_None) {
        PyObject *positioned = Py_BuildValue("(nO)", position, finding);
        status = positioned == NULL ? -1 : PyList_Append(loop->found, positioned);
        Py_XDECREF(positioned);
    }
    Py_DECREF(finding);
    return status;
}

/* The sweep's window and the principal's last features, after ``features`` (a dict) was queried. */
static int learn_sweep(Run *run, PyObject *state, PyObject *features, PyObject *ts) {
    PyObject *sweep = PyObject_GetAttr(state, s_sweep);
    PyObject *last_features = sweep == NULL ? NULL : PyObject_GetAttr(state, s_last_features);
    int status = -1;
    if (last_features == NULL) goto done;
    if (last_features != Py_None) {
        int64_t length = 0;
        int read = int_attr(sweep, s_length, &length);
        if (read != DONE) {
            if (read == DECLINE) PyErr_SetString(PyExc_TypeError, "sweep.length is not a 64-bit int");
            goto done;
        }
        int continues = length ? continue_sweep(sweep, length, features, run->max_interleaved) : 0;
        if (continues < 0) goto done;
        if (!continues) {
            PyObject *last_ts = PyObject_GetAttr(state, s_last_ts);
            if (last_ts == NULL) goto done;
            int extended = extend_sweep(sweep, length, last_features, features, last_ts);
            Py_DECREF(last_ts);
            if (extended < 0) goto done;
        }
    }
    /* copied at the end of the batch (extraction._copy_last_features) */
    status = (PyObject_SetAttr(state, s_last_features, features) < 0 || PyObject_SetAttr(state, s_last_ts, ts) < 0) ? -1 : 0;
done:
    Py_XDECREF(last_features);
    Py_XDECREF(sweep);
    return status;
}

/* The principal's part of one scored prediction: everything after its population count was read. */
static int learn_principal(Run *run, Loop *loop, Py_ssize_t position, PyObject *event, PyObject *principal,
                           PyObject *ts, PyObject *features, int near, int64_t population_n) {
    PyObject *key = PyTuple_Pack(3, principal, PyTuple_GET_ITEM(loop->model_key, 0), PyTuple_GET_ITEM(loop->model_key, 1));
    if (key == NULL) return -1;
    PyObject *state = principal_state(loop, key), *recent = NULL, *maxlen = NULL, *entry = NULL, *signal = NULL;
    int status = -1;
    if (state == NULL) goto done;
    entry = Py_BuildValue("(nO)", position, state);
    if (entry == NULL || PyDict_SetItem(loop->last_touch, key, entry) < 0) goto done;
    Py_CLEAR(entry);
    if ((recent = PyObject_GetAttr(state, s_recent)) == NULL || (maxlen = PyObject_GetAttr(recent, s_maxlen)) == NULL)
        goto done;
    int64_t near_count = 0;
    int read = int_attr(state, s_near, &near_count);
    if (read != DONE) {
        if (read == DECLINE) PyErr_SetString(PyExc_TypeError, "a principal's near count is not a 64-bit int");
        goto done;
    }
    Py_ssize_t n = PyObject_Size(recent);
    if (n < 0) goto done;
    if (maxlen != Py_None && PyLong_AsSsize_t(maxlen) == n) { /* the oldest leaves the window */
        if (PyErr_Occurred()) goto done;
        PyObject *oldest = PySequence_GetItem(recent, 0);
        PyObject *oldest_near = oldest == NULL ? NULL : PySequence_GetItem(oldest, 1);
        int was_near = oldest_near == NULL ? -1 : PyObject_IsTrue(oldest_near);
        Py_XDECREF(oldest_near);
        Py_XDECREF(oldest);
        if (was_near < 0) goto done;
        near_count -= was_near;
    } else if (PyErr_Occurred()) {
        goto done;
    }
    if ((entry = PyTuple_Pack(2, ts, near ? Py_True : Py_False)) == NULL) goto done;
    PyObject *appended = PyObject_CallMethodOneArg(recent, s_append, entry);
    if (appended == NULL) goto done;
    Py_DECREF(appended);
    Py_CLEAR(entry);
    near_count += near;
    if (set_int64_attr(state, s_near, near_count) < 0) goto done;
    if ((double)PyDict_GET_SIZE(features) <= run->max_features && learn_sweep(run, state, features, ts) < 0) goto done;
    if ((n = PyObject_Size(recent)) < 0) goto done;
    int boundary = 0;
    if ((double)n >= run->min_predictions && (double)population_n >= run->min_population) {
        if (n == 0) {
            PyErr_SetString(PyExc_ZeroDivisionError, "division by zero");
            goto done;
        }
        boundary = (double)near_count / (double)n >= run->min_fraction;
    }
    PyObject *share = NULL;
    if (boundary && (share = PyObject_CallMethodNoArgs(PyTuple_GET_ITEM(loop->population, 0), s_get)) == NULL) goto done;
    int crowding = (double)n >= run->crowd && (double)near_count >= run->min_fraction * (double)n;
    int learn = !crowding;
    if (learn) { /* a prober's scores would hide it in the population share */
        PyObject *flagged_until = PyObject_GetAttr(state, s_flagged_until);
        if (flagged_until == NULL) goto done_share;
        if (flagged_until != Py_None) {
            PyObject *newest = PySequence_GetItem(recent, -1);
            PyObject *newest_ts = newest == NULL ? NULL : PySequence_GetItem(newest, 0);
            int quiet = newest_ts == NULL ? -1 : PyObject_RichCompareBool(newest_ts, flagged_until, Py_LT);
            Py_XDECREF(newest_ts);
            Py_XDECREF(newest);
            learn = quiet < 0 ? -1 : !quiet;
        }
        Py_DECREF(flagged_until);
        if (learn < 0) goto done_share;
    }
    if (learn) {
        int64_t count = 0;
        int counted = population_count(loop, &count);
        if (counted != DONE) {
            if (counted == DECLINE) PyErr_SetString(PyExc_TypeError, "a population count is not a 64-bit int");
            goto done_share;
        }
        if (learn_share(loop, near, count) < 0) goto done_share;
    }
    PyObject *sweep = PyObject_GetAttr(state, s_sweep);
    int64_t sweep_length = 0;
    read = sweep == NULL ? FAILED : int_attr(sweep, s_length, &sweep_length);
    Py_XDECREF(sweep);
    if (read != DONE) {
        if (read == DECLINE) PyErr_SetString(PyExc_TypeError, "sweep.length is not a 64-bit int");
        goto done_share;
    }
    if ((double)sweep_length >= run->sweep_length) {
        signal = PyObject_CallMethodOneArg(loop->detector, s_sweep_signal, state);
    } else if (boundary) {
        PyObject *population_n_object = PyLong_FromLongLong(population_n);
        signal = population_n_object == NULL ? NULL : PyObject_CallMethodObjArgs(
            loop->detector, s_boundary_signal, state, share, population_n_object, NULL);
        Py_XDECREF(population_n_object);
    } else {
        status = 0;
        goto done_share;
    }
    status = signal == NULL ? -1 : report(loop, position, event, state, signal);
done_share:
    Py_XDECREF(share);
done:
    Py_XDECREF(signal);
    Py_XDECREF(entry);
    Py_XDECREF(maxlen);
    Py_XDECREF(recent);
    Py_XDECREF(state);
    Py_DECREF(key);
    return status;
}

/* Whether ``features`` is a dict of plain numbers (exact floats and ints), whose comparisons run no
 * Python code; any other map is left to the Python loop. */
static int plain_features(PyObject *features) {
    if (!PyDict_CheckExact(features)) return 0;
    Py_ssize_t cursor = 0;
    PyObject *name, *value;
    while (PyDict_Next(features, &cursor, &name, &value))
        if (!PyFloat_CheckExact(value) && !PyLong_CheckExact(value)) return 0;
    return 1;
}

/* One event: DONE, DECLINE (left to Python, nothing of it done but the population's lookup), FAILED. */
static int learn_one(Run *run, Loop *loop, Py_ssize_t position, PyObject *event) {
    PyObject *score = slots_get(&run->event, event, F_SCORE), *principal = NULL, *ts = NULL, *features = NULL;
    if (score == NULL) return FAILED;
    int status = FAILED;
    if (score == Py_None) {
        status = DONE;
        goto done;
    }
    double value;
    if (PyFloat_CheckExact(score)) {
        value = PyFloat_AS_DOUBLE(score);
    } else if (PyLong_CheckExact(score)) {
        value = PyLong_AsDouble(score);
        if (value == -1.0 && PyErr_Occurred()) { /* beyond a double: Python raises it, word for word */
            PyErr_Clear();
            status = DECLINE;
            goto done;
        }
    } else {
        status = DECLINE;
        goto done;
    }
    /* in the Python loop's order: the population, then the principal, then its time and features */
    int near = fabs(value - 0.5) < run->band;
    if (loop->population == Py_None && take_population(loop) < 0) goto done;
    int64_t population_n = 0;
    int counted = population_count(loop, &population_n);
    if (counted != DONE) {
        status = counted;
        goto done;
    }
    loop->last = position; /* also when declined below: Python sets it again */
    if ((principal = slots_get(&run->event, event, F_PRINCIPAL)) == NULL) goto done;
    if (principal == Py_None) {
        status = learn_share(loop, near, population_n) < 0 ? FAILED : DONE;
        goto done;
    }
    if ((ts = slots_get(&run->event, event, F_TS)) == NULL || (features = slots_get(&run->event, event, F_FEATURES)) == NULL)
        goto done;
    if (!plain_features(features)) {
        status = DECLINE;
        goto done;
    }
    status = learn_principal(run, loop, position, event, principal, ts, features, near, population_n) < 0 ? FAILED : DONE;
done:
    Py_XDECREF(features);
    Py_XDECREF(ts);
    Py_XDECREF(principal);
    Py_DECREF(score);
    return status;
}

static int number(PyObject *settings, Py_ssize_t index, double *out) {
    *out = PyFloat_AsDouble(PyTuple_GET_ITEM(settings, index));
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(learn_run_doc,
"learn_run(detector, model_key, positions, events, start, population, last, found, last_touch, prediction_type,\n"
"          settings) -> (stop, population, last)\n\n"
"ExtractionDetector._py_learn_run over events[start:]; see the file's header.");

static PyObject *learn_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11 || !PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) != 2 || !PyList_Check(args[2])
        || !PyList_Check(args[3]) || PyList_GET_SIZE(args[2]) != PyList_GET_SIZE(args[3]) || !PyList_Check(args[7])
        || !PyDict_Check(args[8]) || !PyType_Check(args[9]) || !PyTuple_Check(args[10]) || PyTuple_GET_SIZE(args[10]) != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "learn_run(detector, model_key: (str, str), positions: list, events: list (as long), start: int, "
                        "population, last: int, found: list, last_touch: dict, prediction_type: type, settings: 8-tuple)");
        return NULL;
    }
    Run run;
    PyObject *settings = args[10];
    if (slots_find(&run.event, (PyTypeObject *)args[9], field_names, N_FIELDS) < 0 || number(settings, 0, &run.band) < 0
        || number(settings, 1, &run.max_features) < 0 || number(settings, 2, &run.min_predictions) < 0
        || number(settings, 3, &run.min_population) < 0 || number(settings, 4, &run.min_fraction) < 0
        || number(settings, 5, &run.crowd) < 0 || number(settings, 6, &run.sweep_length) < 0
        || number(settings, 7, &run.max_interleaved) < 0)
        return NULL;
    Py_ssize_t start = PyLong_AsSsize_t(args[4]), last = PyLong_AsSsize_t(args[6]);
    if ((start == -1 || last == -1) && PyErr_Occurred()) return NULL;
    Loop loop = {args[0], args[1], args[7], args[8], NULL, Py_NewRef(args[5]), NULL, last};
    if ((loop.principals = PyObject_GetAttrString(args[0], "_principals")) == NULL) goto fail;
    if (!PyDict_Check(loop.principals)) {
        PyErr_SetString(PyExc_TypeError, "detector._principals must be an OrderedDict");
        goto fail;
    }
    if (loop.population != Py_None && find_share_update(&loop) < 0) goto fail;
    PyObject *positions = args[2], *events = args[3];
    Py_ssize_t index = start < 0 ? 0 : start;
    /* the sizes read anew and the event held at each step: the detector's methods are Python code */
    for (; index < PyList_GET_SIZE(events) && index < PyList_GET_SIZE(positions); index++) {
        Py_ssize_t position = PyLong_AsSsize_t(PyList_GET_ITEM(positions, index));
        if (position == -1 && PyErr_Occurred()) goto fail;
        PyObject *event = Py_NewRef(PyList_GET_ITEM(events, index));
        int status = learn_one(&run, &loop, position, event);
        Py_DECREF(event);
        if (status == FAILED) goto fail;
        if (status == DECLINE) break;
    }
    PyObject *out = Py_BuildValue("(nOn)", index, loop.population, loop.last);
    Py_DECREF(loop.principals);
    Py_DECREF(loop.population);
    Py_XDECREF(loop.share_update);
    return out;
fail:
    Py_XDECREF(loop.principals);
    Py_DECREF(loop.population);
    Py_XDECREF(loop.share_update);
    return NULL;
}

static PyMethodDef methods[] = {
    {"learn_run", (PyCFunction)(void (*)(void))learn_run, METH_FASTCALL, learn_run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "detectors._extraction",
    "The extraction detector's hot loop, compiled (its Python twin is ExtractionDetector._py_learn_run).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__extraction(void) {
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(field_names[F_SCORE], "score");
    INTERN(field_names[F_PRINCIPAL], "principal");
    INTERN(field_names[F_TS], "ts");
    INTERN(field_names[F_FEATURES], "features");
    INTERN(s_recent, "recent");
    INTERN(s_near, "near");
    INTERN(s_last_features, "last_features");
    INTERN(s_last_ts, "last_ts");
    INTERN(s_sweep, "sweep");
    INTERN(s_flagged_until, "flagged_until");
    INTERN(s_maxlen, "maxlen");
    INTERN(s_append, "append");
    INTERN(s_length, "length");
    INTERN(s_anchor, "anchor");
    INTERN(s_misses, "misses");
    INTERN(s_feature, "feature");
    INTERN(s_direction, "direction");
    INTERN(s_last_value, "last_value");
    INTERN(s_start_ts, "start_ts");
    INTERN(s_first_value, "first_value");
    INTERN(s_move_to_end, "move_to_end");
    INTERN(s_get, "get");
    INTERN(s_update, "update");
    INTERN(s_ewmean, "_ewmean");
    INTERN(s_new_principal, "_new_principal");
    INTERN(s_population_for, "_population_for");
    INTERN(s_sweep_signal, "_sweep_signal");
    INTERN(s_boundary_signal, "_boundary_signal");
    INTERN(s_flag, "_flag");
#undef INTERN
    if ((one = PyLong_FromLong(1)) == NULL || (zero = PyLong_FromLong(0)) == NULL
        || (one_float = PyFloat_FromDouble(1.0)) == NULL || (zero_float = PyFloat_FromDouble(0.0)) == NULL
        || (absent = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type)) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
