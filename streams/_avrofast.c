/* Compiled accept path for event messages: one Avro body -> one event object, or None.
 *
 * streams/codec.py stays the authority on the contract. This module only *accepts*: it reads
 * a schemaless Avro body of one of our event schemas and, when every field is present and
 * plainly valid (the same checks as codec.py's validator: UTF-8 strings within the byte
 * limit, integers within their bounds, finite doubles, known enum indexes and union
 * branches, maps and arrays within the entry limit, a non-empty event_id of at most
 * 256 characters, no trailing bytes), builds the event directly. Anything else returns None
 * and the caller takes the precise path (fastavro + the validator), which also words the
 * error. So a reject can never change an outcome; an accept must equal the precise result,
 * which tests/unit/test_avrofast.py checks field by field on hostile bodies.
 *
 * Entry points: read_message (a message as EventDecoder._parse would read it: plain or
 * Confluent-framed Avro), read_messages (read_message over a list of records), read_event (an Avro body at an offset; tests), read_record (a dict
 * parsed from JSON, with the checks of codec._fast_reader), read_wrapped (read_record for a
 * replay line's {"type", "event"} wrapper) and has_long_digit_run (where
 * orjson and json could disagree). Events are built without their dataclass __init__, taken
 * off the cycle collector's lists, and share repeated short strings (see share()).
 *
 * codec.py compiles one program per decoder with compile(event_class, field_names, fields,
 * max_field_bytes, max_entries, max_message_bytes, allowed_schema_ids), fields a tuple of
 *   (kind, null_branch, value_branch, low, high_inclusive, item_kind, symbols, max_chars)
 * kind / item_kind: 0 string, 1 integer, 2 double, 3 boolean, 4 enum, 5 map, 6 array.
 * null_branch is -1 for a field that is not a union; max_chars is -1 for no character limit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>

enum { K_STRING = 0, K_INTEGER = 1, K_DOUBLE = 2, K_BOOLEAN = 3, K_ENUM = 4, K_MAP = 5, K_ARRAY = 6 };

#define MAX_FIELDS 32

typedef struct {
    int kind;
    int null_branch;   /* -1: not a union */
    int value_branch;
    int64_t low;
    int64_t high;      /* inclusive */
    int item_kind;
    PyObject *symbols; /* borrowed tuple of str, enum only */
    Py_ssize_t max_chars; /* -1: none; else the value must have 1..max_chars characters */
} FieldSpec;

typedef struct {
    const unsigned char *at;
    const unsigned char *end;
    Py_ssize_t max_field_bytes;
    Py_ssize_t max_entries;
    PyObject *shared; /* str -> the same str: one object per distinct short string (see share) */
    PyObject **recent; /* RECENT_SLOTS strings last read, by a hash of their bytes (see read_string) */
} Reader;

/* Strings up to this many bytes are shared: model ids, versions, principals, segment and feature
 * names and values repeat in every event, and detectors keep thousands of events waiting for
 * labels. One object per distinct value saves ~0.8 KB per kept prediction, and its hash is
 * computed once. The table is emptied when it reaches SHARED_MAX entries, so a flood of
 * distinct values costs a bounded amount of memory. */
#define SHARED_MAX_BYTES 64
#define SHARED_MAX 65536
/* read_string looks a short string up by its bytes in a direct-mapped cache of the ASCII strings
 * read last, before decoding it: a hit costs a byte hash and a memcmp instead of a new str, its
 * UTF-8 check, its siphash and a lookup in the shared table (about a third of a message's decoding). */
#define RECENT_SLOTS 1024

/* ``text`` (a new reference, consumed) or the equal string already shared. */
static PyObject *share(PyObject *shared, PyObject *text) {
    if (PyDict_GET_SIZE(shared) >= SHARED_MAX) PyDict_Clear(shared);
    PyObject *canonical = PyDict_SetDefault(shared, text, text);
    if (canonical == NULL) {
        PyErr_Clear();
        return text;
    }
    Py_INCREF(canonical);
    Py_DECREF(text);
    return canonical;
}

/* A new reference to the shared string equal to ``text`` (borrowed), when short enough to share. */
static PyObject *share_existing(PyObject *shared, PyObject *text) {
    Py_INCREF(text);
    return PyUnicode_GET_LENGTH(text) <= SHARED_MAX_BYTES ? share(shared, text) : text;
}

/* Zigzag varint (Avro int and long). Returns 0 on success. */
static int read_long(Reader *r, int64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->at >= r->end) return -1;
        unsigned char byte = *r->at++;
        if (shift == 63 && (byte & 0x7E)) return -1; /* more than 64 bits */
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = (int64_t)(value >> 1) ^ -(int64_t)(value & 1);
            return 0;
        }
    }
    return -1;
}

static PyObject *read_string(Reader *r, int shared) {
    int64_t length;
    if (read_long(r, &length) || length < 0 || length > r->end - r->at || length > r->max_field_bytes) return NULL;
    const unsigned char *start = r->at;
    PyObject **slot = NULL;
    if (shared && length <= SHARED_MAX_BYTES) {
        uint32_t hash = 2166136261u; /* FNV-1a */
        for (int64_t i = 0; i < length; i++) hash = (hash ^ start[i]) * 16777619u;
        slot = &r->recent[hash & (RECENT_SLOTS - 1)];
        PyObject *cached = *slot;
        /* Equal bytes of an ASCII string are valid UTF-8 that decodes to that very string. */
        if (cached != NULL && PyUnicode_GET_LENGTH(cached) == length &&
            memcmp(PyUnicode_1BYTE_DATA(cached), start, (size_t)length) == 0) {
            r->at += length;
            Py_INCREF(cached);
            return cached;
        }
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)start, (Py_ssize_t)length, NULL);
    if (text == NULL) {
        PyErr_Clear();
        return NULL;
    }
    r->at += length;
    if (slot == NULL) return text;
    text = share(r->shared, text);
    if (PyUnicode_IS_COMPACT_ASCII(text)) { /* only these may sit in the cache: their data are their bytes */
        Py_INCREF(text);
        Py_XSETREF(*slot, text);
    }
    return text;
}

static PyObject *read_scalar(Reader *r, int kind, const FieldSpec *spec) {
    int64_t number;
    switch (kind) {
    case K_STRING:
        return read_string(r, spec->max_chars < 0); /* not event ids: each is new */
    case K_INTEGER:
        if (read_long(r, &number) || number < spec->low || number > spec->high) return NULL;
        return PyLong_FromLongLong(number);
    case K_DOUBLE: {
        if (r->end - r->at < 8) return NULL;
        double value = PyFloat_Unpack8((const char *)r->at, 1);
        if (value == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return NULL;
        }
        r->at += 8;
        if (!isfinite(value)) return NULL;
        return PyFloat_FromDouble(value);
    }
    case K_BOOLEAN:
        if (r->at >= r->end || *r->at > 1) return NULL;
        return PyBool_FromLong(*r->at++);
    case K_ENUM:
        if (read_long(r, &number) || number < 0 || number >= PyTuple_GET_SIZE(spec->symbols)) return NULL;
        PyObject *symbol = PyTuple_GET_ITEM(spec->symbols, (Py_ssize_t)number);
        Py_INCREF(symbol);
        return symbol;
    }
    return NULL;
}

/* The next block's item count (0 at the end); a negative count is followed by the block's byte size. */
static int read_block_count(Reader *r, int64_t *count) {
    if (read_long(r, count)) return -1;
    if (*count < 0) {
        int64_t block_bytes;
        if (*count == INT64_MIN || read_long(r, &block_bytes)) return -1;
        *count = -*count;
    }
    return 0;
}

static PyObject *read_map(Reader *r, const FieldSpec *spec) {
    PyObject *entries = PyDict_New();
    if (entries == NULL) return NULL;
    int64_t total = 0, count;
    for (;;) {
        if (read_block_count(r, &count)) goto reject;
        if (count == 0) return entries;
        total += count;
        if (total > r->max_entries) goto reject;
        for (int64_t i = 0; i < count; i++) {
            PyObject *key = read_string(r, 1);
            if (key == NULL) goto reject;
            PyObject *value = read_scalar(r, spec->item_kind, spec);
            if (value == NULL) {
                Py_DECREF(key);
                goto reject;
            }
            int failed = PyDict_SetItem(entries, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (failed) goto reject;
        }
    }
reject:
    PyErr_Clear();
    Py_DECREF(entries);
    return NULL;
}

static PyObject *read_array(Reader *r, const FieldSpec *spec) {
    PyObject *items = PyList_New(0);
    if (items == NULL) return NULL;
    int64_t total = 0, count;
    for (;;) {
        if (read_block_count(r, &count)) goto reject;
        if (count == 0) {
            PyObject *frozen = PyList_AsTuple(items);
            Py_DECREF(items);
            return frozen;
        }
        total += count;
        if (total > r->max_entries) goto reject;
        for (int64_t i = 0; i < count; i++) {
            PyObject *item = read_scalar(r, spec->item_kind, spec);
            if (item == NULL) goto reject;
            int failed = PyList_Append(items, item);
            Py_DECREF(item);
            if (failed) goto reject;
        }
    }
reject:
    PyErr_Clear();
    Py_DECREF(items);
    return NULL;
}

static PyObject *read_field(Reader *r, const FieldSpec *spec) {
    if (spec->null_branch >= 0) {
        int64_t branch;
        if (read_long(r, &branch)) return NULL;
        if (branch == spec->null_branch) Py_RETURN_NONE;
        if (branch != spec->value_branch) return NULL;
    }
    PyObject *value;
    if (spec->kind == K_MAP) value = read_map(r, spec);
    else if (spec->kind == K_ARRAY) value = read_array(r, spec);
    else value = read_scalar(r, spec->kind, spec);
    if (value != NULL && spec->max_chars >= 0) {
        Py_ssize_t chars = PyUnicode_GET_LENGTH(value);
        if (chars == 0 || chars > spec->max_chars) Py_CLEAR(value);
    }
    return value;
}

typedef struct {
    PyObject *cls;    /* owned */
    PyObject *names;  /* owned tuple of str */
    PyObject *fields; /* owned: keeps the enum symbol tuples alive */
    Py_ssize_t n;
    Py_ssize_t max_field_bytes;
    Py_ssize_t max_entries;
    Py_ssize_t max_message_bytes;
    PyObject *allowed_schema_ids; /* owned set of int, or Py_None: any id */
    PyObject *shared;             /* owned dict: the shared strings of this program's events */
    PyObject *recent[RECENT_SLOTS]; /* owned (or NULL): the ASCII strings read last, by their bytes' hash */
    int slots;                    /* every field is a writable object slot: build stores at slot_offsets */
    Py_ssize_t slot_offsets[MAX_FIELDS];
    FieldSpec specs[MAX_FIELDS];
} Program;

static const char *PROGRAM = "streams._avrofast.Program";

static void program_free(PyObject *capsule) {
    Program *program = PyCapsule_GetPointer(capsule, PROGRAM);
    if (program == NULL) return;
    Py_XDECREF(program->cls);
    Py_XDECREF(program->names);
    Py_XDECREF(program->fields);
    Py_XDECREF(program->allowed_schema_ids);
    Py_XDECREF(program->shared);
    for (Py_ssize_t i = 0; i < RECENT_SLOTS; i++) Py_XDECREF(program->recent[i]);
    PyMem_Free(program);
}

PyDoc_STRVAR(compile_doc,
"compile(event_class, field_names, fields, max_field_bytes, max_entries, max_message_bytes,\n"
"        allowed_schema_ids) -> program\n\n"
"One schema's reader, built once per decoder; ``fields`` as described at the top of _avrofast.c;\n"
"``allowed_schema_ids`` is a set of Confluent schema ids, or None for any.");

/* 1 when every name is a writable object slot of ``cls`` (a slots dataclass), with its offset in
 * ``offsets``; 0 when not (build then sets attributes the generic way); -1 on an error. */
static int find_slots(PyObject *cls, PyObject *names, Py_ssize_t *offsets) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        PyObject *descriptor = PyObject_GetAttr(cls, PyTuple_GET_ITEM(names, i));
        if (descriptor == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
            PyErr_Clear();
            return 0;
        }
        int usable = Py_IS_TYPE(descriptor, &PyMemberDescr_Type) &&
                     ((PyMemberDescrObject *)descriptor)->d_common.d_type == (PyTypeObject *)cls &&
                     ((PyMemberDescrObject *)descriptor)->d_member->type == T_OBJECT_EX &&
                     !(((PyMemberDescrObject *)descriptor)->d_member->flags & READONLY);
        if (usable) offsets[i] = ((PyMemberDescrObject *)descriptor)->d_member->offset;
        Py_DECREF(descriptor);
        if (!usable) return 0;
        for (Py_ssize_t j = 0; j < i; j++)
            if (offsets[j] == offsets[i]) return 0; /* a name given twice: the generic path replaces, not leaks */
    }
    return 1;
}

static PyObject *compile_program(PyObject *module, PyObject *args) {
    PyObject *cls, *names, *fields, *allowed;
    Py_ssize_t max_field_bytes, max_entries, max_message_bytes;
    if (!PyArg_ParseTuple(args, "O!O!O!nnnO", &PyType_Type, &cls, &PyTuple_Type, &names, &PyTuple_Type, &fields,
                          &max_field_bytes, &max_entries, &max_message_bytes, &allowed))
        return NULL;
    if (allowed != Py_None && !PyAnySet_Check(allowed)) {
        PyErr_SetString(PyExc_TypeError, "allowed_schema_ids must be a set or None");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (n > MAX_FIELDS || PyTuple_GET_SIZE(names) != n) {
        PyErr_SetString(PyExc_ValueError, "one name per field, at most 32 fields");
        return NULL;
    }
    Program *program = PyMem_Calloc(1, sizeof(Program));
    if (program == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        FieldSpec *spec = &program->specs[i];
        long long low, high;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "iiiLLiOn", &spec->kind, &spec->null_branch,
                              &spec->value_branch, &low, &high, &spec->item_kind, &spec->symbols, &spec->max_chars)) {
            PyMem_Free(program);
            return NULL;
        }
        spec->low = low;
        spec->high = high;
        int enum_kind = spec->kind == K_ENUM || ((spec->kind == K_MAP || spec->kind == K_ARRAY) && spec->item_kind == K_ENUM);
        if (enum_kind && !PyTuple_Check(spec->symbols)) {
            PyErr_SetString(PyExc_TypeError, "enum symbols must be a tuple");
            PyMem_Free(program);
            return NULL;
        }
    }
    program->shared = PyDict_New();
    if (program->shared == NULL) {
        PyMem_Free(program);
        return NULL;
    }
    program->n = n;
    program->slots = find_slots(cls, names, program->slot_offsets);
    if (program->slots < 0) {
        Py_DECREF(program->shared);
        PyMem_Free(program);
        return NULL;
    }
    program->max_field_bytes = max_field_bytes;
    program->max_entries = max_entries;
    program->max_message_bytes = max_message_bytes;
    Py_INCREF(allowed);
    program->allowed_schema_ids = allowed;
    Py_INCREF(cls);
    Py_INCREF(names);
    Py_INCREF(fields);
    program->cls = cls;
    program->names = names;
    program->fields = fields;
    PyObject *capsule = PyCapsule_New(program, PROGRAM, program_free);
    if (capsule == NULL) {
        Py_DECREF(cls);
        Py_DECREF(names);
        Py_DECREF(fields);
        Py_DECREF(allowed);
        Py_DECREF(program->shared);
        PyMem_Free(program);
    }
    return capsule;
}

/* object.__new__(cls) and object.__setattr__ per field: exactly what a frozen dataclass's __init__ does
 * (for a slots class, straight into the slots found at compile time).
 * Borrows ``values``. */
static PyObject *build(Program *program, PyObject **values) {
    PyTypeObject *type = (PyTypeObject *)program->cls;
    PyObject *event = type->tp_alloc(type, 0);
    if (event == NULL) return NULL;
    if (program->slots) { /* what the slot's member descriptor would do, without looking it up per field */
        for (Py_ssize_t i = 0; i < program->n; i++) {
            Py_INCREF(values[i]);
            *(PyObject **)((char *)event + program->slot_offsets[i]) = values[i];
        }
    }
    else for (Py_ssize_t i = 0; i < program->n; i++) {
        if (PyObject_GenericSetAttr(event, PyTuple_GET_ITEM(program->names, i), values[i])) {
            Py_DECREF(event);
            return NULL;
        }
    }
    /* The event holds only strings, numbers, None, and dicts and tuples of strings and numbers,
     * and it is frozen: it can never be part of a reference cycle. Taking it off the collector's
     * lists spares every collection a visit to the many thousands of events detectors keep
     * waiting for their labels (dicts of atomic values are untracked by CPython already). */
    PyObject_GC_UnTrack(event);
    return event;
}

/* The event built from the ``read`` values (when ``accepted``) or None; releases the values either way. */
static PyObject *finish(Program *program, PyObject **values, Py_ssize_t read, int accepted) {
    PyObject *result;
    if (accepted) {
        result = build(program, values);
    } else {
        PyErr_Clear();
        result = Py_None;
        Py_INCREF(result);
    }
    for (Py_ssize_t i = 0; i < read; i++) Py_DECREF(values[i]);
    return result;
}

/* The event in message[offset:], or None (a new reference either way); NULL only on a real error. */
static PyObject *read_body(Program *program, PyObject *message, Py_ssize_t offset) {
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(message);
    Reader reader = {bytes + offset, bytes + PyBytes_GET_SIZE(message), program->max_field_bytes,
                     program->max_entries, program->shared, program->recent};
    PyObject *values[MAX_FIELDS];
    Py_ssize_t n = program->n, read = 0;
    for (; read < n; read++) {
        values[read] = read_field(&reader, &program->specs[read]);
        if (values[read] == NULL) break;
    }
    /* Declined: a field the fast path does not accept, or trailing bytes. */
    return finish(program, values, read, read == n && reader.at == reader.end);
}

PyDoc_STRVAR(read_event_doc,
"read_event(program, message, start) -> event or None\n\n"
"The event in the schemaless Avro body ``message[start:]`` (bytes) when every field is present\n"
"and plainly valid, else None (the caller then takes the precise path, which words the error).");

static PyObject *read_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[1]) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "read_event(program, message: bytes, start: int)");
        return NULL;
    }
    Program *program = PyCapsule_GetPointer(args[0], PROGRAM);
    if (program == NULL) return NULL;
    Py_ssize_t offset = PyLong_AsSsize_t(args[2]);
    if (offset == -1 && PyErr_Occurred()) return NULL;
    if (offset < 0 || offset > PyBytes_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_ValueError, "start outside the message");
        return NULL;
    }
    return read_body(program, args[1], offset);
}

PyDoc_STRVAR(read_message_doc,
"read_message(program, message) -> event or None\n\n"
"The event in ``message`` when it is plain or Confluent-framed Avro (as EventDecoder._parse\n"
"would read it: not JSON-looking, within the size limit, an allowed schema id) and plainly\n"
"valid; else None.");

static PyObject *read_message(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_message(program, message)");
        return NULL;
    }
    Program *program = PyCapsule_GetPointer(args[0], PROGRAM);
    if (program == NULL) return NULL;
    PyObject *message = args[1];
    if (!PyBytes_CheckExact(message)) Py_RETURN_NONE;
    Py_ssize_t size = PyBytes_GET_SIZE(message);
    if (size == 0 || size > program->max_message_bytes) Py_RETURN_NONE;
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(message);
    switch (bytes[0]) {
    case '{': case ' ': case '\t': case '\r': case '\n': /* tried as JSON first */
        Py_RETURN_NONE;
    case 0: { /* Confluent framing: 0, a 4-byte big-endian schema id, the body */
        if (size <= 5) Py_RETURN_NONE;
        if (program->allowed_schema_ids != Py_None) {
            unsigned long id = ((unsigned long)bytes[1] << 24) | ((unsigned long)bytes[2] << 16) |
                               ((unsigned long)bytes[3] << 8) | (unsigned long)bytes[4];
            PyObject *key = PyLong_FromUnsignedLong(id);
            if (key == NULL) return NULL;
            int allowed = PySet_Contains(program->allowed_schema_ids, key);
            Py_DECREF(key);
            if (allowed < 0) return NULL;
            if (!allowed) Py_RETURN_NONE;
        }
        return read_body(program, message, 5);
    }
    default:
        return read_body(program, message, 0);
    }
}

PyDoc_STRVAR(read_messages_doc,
"read_messages(program, records) -> (events, declined)\n\n"
"read_message over ``records`` (a list of objects with a ``value``: aiokafka's ConsumerRecord; or of\n"
"the values themselves, bytes or None, as streams.fetch.FetchedRun keeps them):\n"
"the events read, in order, and the positions of the records read_message declined (a value that\n"
"is None or not bytes declines too). The worker's hot loop, with no Python step per record.");

static PyObject *read_messages(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "read_messages(program, records: list)");
        return NULL;
    }
    static PyObject *value_name = NULL;
    if (value_name == NULL && (value_name = PyUnicode_InternFromString("value")) == NULL) return NULL;
    PyObject *records = args[1];
    PyObject *events = PyList_New(0), *declined = PyList_New(0);
    if (events == NULL || declined == NULL) goto fail;
    /* the size read anew at each step and the record held: its ``value`` may be Python code */
    for (Py_ssize_t index = 0; index < PyList_GET_SIZE(records); index++) {
        PyObject *record = Py_NewRef(PyList_GET_ITEM(records, index));
        PyObject *value = PyBytes_CheckExact(record) || record == Py_None
            ? Py_NewRef(record) : PyObject_GetAttr(record, value_name);  /* a value itself (a FetchedRun's) */
        Py_DECREF(record);
        if (value == NULL) goto fail;
        PyObject *call[2] = {args[0], value};
        PyObject *event = read_message(module, call, 2);
        Py_DECREF(value);
        if (event == NULL) goto fail;
        int status;
        if (event == Py_None) {
            PyObject *position = PyLong_FromSsize_t(index);
            status = position == NULL ? -1 : PyList_Append(declined, position);
            Py_XDECREF(position);
        } else {
            status = PyList_Append(events, event);
        }
        Py_DECREF(event);
        if (status < 0) goto fail;
    }
    PyObject *out = PyTuple_Pack(2, events, declined);
    Py_DECREF(events);
    Py_DECREF(declined);
    return out;
fail:
    Py_XDECREF(events);
    Py_XDECREF(declined);
    return NULL;
}

/* ---- records (JSON and replay lines): a dict already parsed, checked as codec._fast_reader does ---- */

/* A new reference to the accepted value, or NULL to decline (never with an error set). */
static PyObject *check_scalar(const FieldSpec *spec, int kind, PyObject *value, Py_ssize_t longest_chars,
                              PyObject *shared) {
    switch (kind) {
    case K_STRING:
        if (!PyUnicode_CheckExact(value) || PyUnicode_GET_LENGTH(value) > longest_chars) return NULL;
        return spec->max_chars < 0 ? share_existing(shared, value) : (Py_INCREF(value), value);
    case K_INTEGER: {
        if (!PyLong_CheckExact(value)) return NULL;
        int overflow;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (number == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return NULL;
        }
        if (number < spec->low || number > spec->high) return NULL;
        break;
    }
    case K_DOUBLE:
        if (PyFloat_CheckExact(value) && isfinite(PyFloat_AS_DOUBLE(value))) break;
        return NULL;
    case K_ENUM: {
        if (!PyUnicode_CheckExact(value)) return NULL;
        int known = PySequence_Contains(spec->symbols, value);
        if (known < 0) PyErr_Clear();
        if (known != 1) return NULL; /* an unknown symbol may map to the enum's default: the precise path */
        break;
    }
    default: /* booleans and arrays (data-change consumers) are rare: the precise path */
        return NULL;
    }
    Py_INCREF(value);
    return value;
}

/* A copy of the map with shared string values, or NULL to decline. */
static PyObject *check_map(const FieldSpec *spec, PyObject *value, Py_ssize_t max_entries, Py_ssize_t longest_chars,
                           PyObject *shared) {
    if (!PyDict_CheckExact(value) || PyDict_GET_SIZE(value) > max_entries) return NULL;
    PyObject *copy = PyDict_New();
    if (copy == NULL) goto decline;
    Py_ssize_t position = 0;
    PyObject *key, *item;
    while (PyDict_Next(value, &position, &key, &item)) {
        if (!PyUnicode_CheckExact(key) || PyUnicode_GET_LENGTH(key) > longest_chars) goto decline;
        PyObject *checked = check_scalar(spec, spec->item_kind, item, longest_chars, shared);
        if (checked == NULL) goto decline;
        int failed = PyDict_SetItem(copy, key, checked); /* keys: orjson already shares them */
        Py_DECREF(checked);
        if (failed) goto decline;
    }
    return copy;
decline:
    PyErr_Clear();
    Py_XDECREF(copy);
    return NULL;
}

PyDoc_STRVAR(read_record_doc,
"read_record(program, record) -> event or None\n\n"
"The event of a parsed record (a dict with the schema's field names, as from JSON) when\n"
"every field is present and plainly valid, with the checks of codec._fast_reader; else None.");

static PyObject *read_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_record(program, record)");
        return NULL;
    }
    Program *program = PyCapsule_GetPointer(args[0], PROGRAM);
    if (program == NULL) return NULL;
    PyObject *record = args[1];
    if (!PyDict_CheckExact(record)) Py_RETURN_NONE;
    /* A str never takes more than 4 UTF-8 bytes per character: longer ones are measured on the precise path. */
    Py_ssize_t longest_chars = program->max_field_bytes / 4;
    PyObject *values[MAX_FIELDS];
    Py_ssize_t n = program->n, read = 0;
    for (; read < n; read++) {
        const FieldSpec *spec = &program->specs[read];
        PyObject *value = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(program->names, read));
        if (value == NULL) break; /* missing (its default is filled in on the precise path), or an error */
        if (value == Py_None) {
            if (spec->null_branch < 0) break;
            Py_INCREF(value);
            values[read] = value;
            continue;
        }
        if (spec->kind == K_MAP) values[read] = check_map(spec, value, program->max_entries, longest_chars, program->shared);
        else values[read] = check_scalar(spec, spec->kind, value, longest_chars, program->shared);
        if (values[read] != NULL && spec->max_chars >= 0) {
            Py_ssize_t chars = PyUnicode_GET_LENGTH(values[read]);
            if (chars == 0 || chars > spec->max_chars) Py_CLEAR(values[read]);
        }
        if (values[read] == NULL) break;
    }
    return finish(program, values, read, read == n);
}

PyDoc_STRVAR(read_wrapped_doc,
"read_wrapped(programs, wrapper) -> event or None\n\n"
"read_record for a replay line's parsed ``{\"type\": ..., \"event\": {...}}``: ``programs`` maps each\n"
"event type to its program. None when the wrapper is not a dict, names no known type or its\n"
"record is declined (replay.parse_line then says why).");

static PyObject *read_wrapped(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "read_wrapped(programs: dict, wrapper)");
        return NULL;
    }
    static PyObject *type_key = NULL, *event_key = NULL;
    if (type_key == NULL && (type_key = PyUnicode_InternFromString("type")) == NULL) return NULL;
    if (event_key == NULL && (event_key = PyUnicode_InternFromString("event")) == NULL) return NULL;
    PyObject *wrapper = args[1];
    if (!PyDict_CheckExact(wrapper)) Py_RETURN_NONE;
    PyObject *event_type = PyDict_GetItemWithError(wrapper, type_key);
    if (event_type == NULL || !PyUnicode_CheckExact(event_type)) goto decline;
    PyObject *program = PyDict_GetItemWithError(args[0], event_type);
    PyObject *record = program == NULL ? NULL : PyDict_GetItemWithError(wrapper, event_key);
    if (record == NULL) goto decline;
    PyObject *pair[2] = {program, record};
    return read_record(module, pair, 2);
decline:
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* ---- JSON text: where orjson and json could disagree ---- */

PyDoc_STRVAR(has_long_digit_run_doc,
"has_long_digit_run(text, digits) -> bool\n\n"
"Whether ``text`` holds ``digits`` ASCII digits in a row (codec.loads_json: a number that\n"
"may be an integer beyond 64 bits, which orjson reads as a float and json as an int).");

static PyObject *has_long_digit_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "has_long_digit_run(text: str, digits: int)");
        return NULL;
    }
    Py_ssize_t digits = PyLong_AsSsize_t(args[1]);
    if (digits == -1 && PyErr_Occurred()) return NULL;
    PyObject *text = args[0];
    if (digits < 1) return PyBool_FromLong(PyUnicode_GET_LENGTH(text) > 0); /* as the generic loop answers */
    if (PyUnicode_KIND(text) == PyUnicode_1BYTE_KIND) {
        /* Look at the last character of each window of ``digits``: when it is not a digit, no run of
         * ``digits`` can overlap the window, so the next window starts after it. Most lines are
         * read at one character in ``digits``. */
        const unsigned char *characters = PyUnicode_1BYTE_DATA(text);
        Py_ssize_t length = PyUnicode_GET_LENGTH(text), start = 0;
        while (start + digits <= length) {
            Py_ssize_t last = start + digits - 1;
            if ((unsigned)(characters[last] - '0') > 9u) {
                start = last + 1;
                continue;
            }
            Py_ssize_t first = last;
            while (first > start && (unsigned)(characters[first - 1] - '0') <= 9u) first--;
            if (first == start) Py_RETURN_TRUE; /* characters[start..last] are all digits */
            start = first; /* characters[first - 1] is not a digit: a run starts at first or later */
        }
        Py_RETURN_FALSE;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text), run = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_UCS4 character = PyUnicode_READ(kind, data, i);
        run = (character >= '0' && character <= '9') ? run + 1 : 0;
        if (run >= digits) Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"compile", compile_program, METH_VARARGS, compile_doc},
    {"read_event", (PyCFunction)(void (*)(void))read_event, METH_FASTCALL, read_event_doc},
    {"read_message", (PyCFunction)(void (*)(void))read_message, METH_FASTCALL, read_message_doc},
    {"read_messages", (PyCFunction)(void (*)(void))read_messages, METH_FASTCALL, read_messages_doc},
    {"read_record", (PyCFunction)(void (*)(void))read_record, METH_FASTCALL, read_record_doc},
    {"read_wrapped", (PyCFunction)(void (*)(void))read_wrapped, METH_FASTCALL, read_wrapped_doc},
    {"has_long_digit_run", (PyCFunction)(void (*)(void))has_long_digit_run, METH_FASTCALL, has_long_digit_run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "streams._avrofast",
    "Compiled accept path for event messages (see streams/codec.py).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__avrofast(void) { return PyModule_Create(&module); }
