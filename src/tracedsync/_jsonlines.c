/* tracedsync._speedups.json_lines: a batch of records as JSON Lines, in C.
 *
 * The reference is tracedsync._jsonl.record_to_json (Python): this function
 * returns exactly b"".join(record_to_json(r).encode() + b"\n" for r in
 * records).  It assembles each line from the same pieces the Python function
 * joins, and takes the pieces that need Python's rules from the very Python
 * functions that make them (`helpers`, below): the thread, primitive and
 * site fragments, and the quoting of strings (encode_basestring_ascii).  Each
 * distinct piece is asked for once per batch and kept in small caches keyed
 * by the objects themselves (the batch holds them alive while it runs).  A
 * record with anything unusual (a float, a field that shadows a common one,
 * an unknown level, objects of unexpected types) is handed whole to
 * record_to_json, so its line, or its exception, is the reference's own.
 *
 * Every line is ASCII: encode_basestring_ascii escapes everything else.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* helpers: (record_to_json, thread_json, primitive_json, site_json, quote,
 *           level_names, common_fields, prefix) */
enum { H_RECORD, H_THREAD, H_PRIMITIVE, H_SITE, H_QUOTE, H_LEVELS, H_COMMON, H_PREFIX, H_SIZE };

/* ---- an output buffer of bytes ------------------------------------------ */

typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Buffer;

static int
reserve(Buffer *out, Py_ssize_t more)
{
    if (out->size + more <= out->capacity)
        return 0;
    Py_ssize_t capacity = out->capacity ? out->capacity : 65536;
    while (capacity < out->size + more)
        capacity *= 2;
    char *grown = PyMem_Realloc(out->data, capacity);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    out->data = grown;
    out->capacity = capacity;
    return 0;
}

static int
put(Buffer *out, const char *text, Py_ssize_t length)
{
    if (reserve(out, length) < 0)
        return -1;
    memcpy(out->data + out->size, text, length);
    out->size += length;
    return 0;
}

#define PUT_LITERAL(out, text) put((out), (text), (Py_ssize_t)sizeof(text) - 1)

/* An ASCII str's characters (a fragment or a quoted string); 1 if it is not
 * an ASCII str (the record goes to the reference then). */
static int
put_ascii(Buffer *out, PyObject *text)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text))
        return 1;
    return put(out, (const char *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text));
}

/* An exact int, as int.__repr__ spells it (0, or 1: not an exact int). */
static int
put_int(Buffer *out, PyObject *value)
{
    if (!PyLong_CheckExact(value))
        return 1;
    int overflow;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (number == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {  /* the digits, last first (snprintf costs ten times more) */
        char digits[24];
        char *end = digits + sizeof(digits), *at = end;
        unsigned long long magnitude = number < 0 ? 0ULL - (unsigned long long)number
                                                  : (unsigned long long)number;
        do {
            *--at = (char)('0' + magnitude % 10);
            magnitude /= 10;
        } while (magnitude);
        if (number < 0)
            *--at = '-';
        return put(out, at, end - at);
    }
    PyObject *text = PyObject_Repr(value);
    if (text == NULL)
        return -1;
    int done = put_ascii(out, text);
    Py_DECREF(text);
    return done;
}

/* ---- per-batch caches: object -> its JSON piece ------------------------- */

#define CACHE_SIZE 256

typedef struct {
    PyObject *key;   /* borrowed: the batch keeps it alive */
    long offset;     /* sites only */
    PyObject *piece; /* a str, owned */
} Slot;

typedef struct {
    Slot slots[CACHE_SIZE];
} Cache;

static inline Slot *
slot_of(Cache *cache, PyObject *key, long offset)
{
    size_t hash = ((size_t)key >> 4) ^ (size_t)offset * 31u;
    return &cache->slots[hash % CACHE_SIZE];
}

static void
cache_clear(Cache *cache)
{
    for (int i = 0; i < CACHE_SIZE; i++)
        Py_CLEAR(cache->slots[i].piece);
}

/* The piece of key (func(key), or func(key, offset) for a site): borrowed
 * from the cache, or NULL with an exception. */
static PyObject *
piece(Cache *cache, PyObject *func, PyObject *key, PyObject *offset_object, long offset)
{
    Slot *slot = slot_of(cache, key, offset);
    if (slot->piece != NULL && slot->key == key && slot->offset == offset)
        return slot->piece;
    PyObject *made = offset_object == NULL
                         ? PyObject_CallOneArg(func, key)
                         : PyObject_CallFunctionObjArgs(func, key, offset_object, NULL);
    if (made == NULL)
        return NULL;
    Py_XSETREF(slot->piece, made);
    slot->key = key;
    slot->offset = offset;
    return made;
}

typedef struct {
    PyObject **helpers;
    Cache strings, keys, threads, primitives, sites;
} Batch;

/* A string value or key, quoted: 0, 1 (not an exact str), -1. */
static int
put_string(Batch *batch, Buffer *out, PyObject *text)
{
    if (!PyUnicode_CheckExact(text))
        return 1;
    PyObject *quoted = piece(&batch->strings, batch->helpers[H_QUOTE], text, NULL, 0);
    return quoted == NULL ? -1 : put_ascii(out, quoted);
}

/* One operation field's value, as _jsonl._ATOM_JSON spells it. */
static int
put_value(Batch *batch, Buffer *out, PyObject *value)
{
    if (value == Py_None)
        return PUT_LITERAL(out, "null");
    if (value == Py_True)
        return PUT_LITERAL(out, "true");
    if (value == Py_False)
        return PUT_LITERAL(out, "false");
    if (PyLong_CheckExact(value))
        return put_int(out, value);
    return put_string(batch, out, value);  /* anything else: 1, the reference */
}

/* The piece of a field's key: ,"key": as a str, or None if the key shadows
 * a common field (borrowed from the cache, NULL with an exception). */
static PyObject *
key_piece(Batch *batch, PyObject *key)
{
    Slot *slot = slot_of(&batch->keys, key, 0);
    if (slot->piece != NULL && slot->key == key)
        return slot->piece;
    PyObject *made;
    int common = PySet_Contains(batch->helpers[H_COMMON], key);
    if (common < 0)
        return NULL;
    if (common)
        made = Py_NewRef(Py_None);
    else {
        PyObject *quoted = PyObject_CallOneArg(batch->helpers[H_QUOTE], key);
        if (quoted == NULL)
            return NULL;
        made = PyUnicode_FromFormat(",%U:", quoted);
        Py_DECREF(quoted);
        if (made == NULL)
            return NULL;
    }
    Py_XSETREF(slot->piece, made);
    slot->key = key;
    slot->offset = 0;
    return made;
}

/* One field: ,"key":value */
static int
put_field(Batch *batch, Buffer *out, PyObject *key, PyObject *value)
{
    if (!PyUnicode_CheckExact(key))
        return 1;
    PyObject *prefix = key_piece(batch, key);
    if (prefix == NULL)
        return -1;
    if (prefix == Py_None)
        return 1;  /* shadows a common field: the reference */
    int done = put_ascii(out, prefix);
    if (done == 0)
        done = put_value(batch, out, value);
    return done;
}

/* The operation's fields (pairs or a dict). */
static int
put_fields(Batch *batch, Buffer *out, PyObject *data)
{
    if (data == Py_None)
        return 0;
    if (PyTuple_CheckExact(data)) {
        Py_ssize_t size = PyTuple_GET_SIZE(data);
        if (size % 2)
            return 1;
        for (Py_ssize_t i = 0; i < size; i += 2) {
            int done = put_field(batch, out, PyTuple_GET_ITEM(data, i),
                                 PyTuple_GET_ITEM(data, i + 1));
            if (done)
                return done;
        }
        return 0;
    }
    if (PyDict_CheckExact(data)) {
        Py_ssize_t position = 0;
        PyObject *key, *value;
        while (PyDict_Next(data, &position, &key, &value)) {
            int done = put_field(batch, out, key, value);
            if (done)
                return done;
        }
        return 0;
    }
    return 1;
}

/* One record's line: 0, 1 (the reference must make it), -1. */
static int
put_record(Batch *batch, Buffer *out, PyObject *record)
{
    if (!PyTuple_CheckExact(record) || PyTuple_GET_SIZE(record) != 9)
        return 1;
    PyObject *seq = PyTuple_GET_ITEM(record, 0), *time = PyTuple_GET_ITEM(record, 1),
             *thread = PyTuple_GET_ITEM(record, 2), *event = PyTuple_GET_ITEM(record, 3),
             *level = PyTuple_GET_ITEM(record, 4), *primitive = PyTuple_GET_ITEM(record, 5),
             *code = PyTuple_GET_ITEM(record, 6), *offset = PyTuple_GET_ITEM(record, 7),
             *data = PyTuple_GET_ITEM(record, 8);
    PyObject **helpers = batch->helpers;
    if (!PyLong_CheckExact(offset))
        return 1;
    if ((PyTuple_CheckExact(data) && PyTuple_GET_SIZE(data) == 0)
        || (PyDict_CheckExact(data) && PyDict_GET_SIZE(data) == 0))
        data = Py_None;  /* no fields (the reference's "if data") */
    long at = PyLong_AsLong(offset);
    if (at == -1 && PyErr_Occurred())
        return -1;
    PyObject *level_name = PyDict_GetItemWithError(helpers[H_LEVELS], level);
    if (level_name == NULL)
        return PyErr_Occurred() ? -1 : 1;
    PyObject *thread_piece = piece(&batch->threads, helpers[H_THREAD], thread, NULL, 0);
    if (thread_piece == NULL)
        return -1;
    PyObject *primitive_piece = piece(&batch->primitives, helpers[H_PRIMITIVE], primitive, NULL,
                                      0);
    if (primitive_piece == NULL)
        return -1;
    PyObject *site_piece = piece(&batch->sites, helpers[H_SITE], code, offset, at);
    if (site_piece == NULL)
        return -1;
    int done = put_ascii(out, helpers[H_PREFIX]);
#define STEP(call)            \
    if (done == 0)            \
        done = (call);
    STEP(put_int(out, seq))
    STEP(PUT_LITERAL(out, ",\"time_ns\":"))
    STEP(put_int(out, time))
    STEP(PUT_LITERAL(out, ",\"event\":"))
    STEP(put_string(batch, out, event))
    STEP(PUT_LITERAL(out, ",\"level\":\""))
    STEP(put_ascii(out, level_name))
    STEP(PUT_LITERAL(out, "\","))
    STEP(put_ascii(out, thread_piece))
    STEP(PUT_LITERAL(out, ","))
    STEP(put_ascii(out, primitive_piece))
    STEP(PUT_LITERAL(out, ","))
    STEP(put_ascii(out, site_piece))
    STEP(put_fields(batch, out, data))
    STEP(PUT_LITERAL(out, "}\n"))
#undef STEP
    return done;
}

/* json_lines(records, helpers) -> bytes */
PyObject *
tracedsync_json_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])
        || PyTuple_GET_SIZE(args[1]) != H_SIZE || !PyDict_Check(PyTuple_GET_ITEM(args[1], H_LEVELS))
        || !PyAnySet_Check(PyTuple_GET_ITEM(args[1], H_COMMON))) {
        PyErr_SetString(PyExc_TypeError, "json_lines(records: list, helpers: tuple)");
        return NULL;
    }
    /* A copy: a record's rendering may run code that changes the list. */
    PyObject *records = PyList_GetSlice(args[0], 0, PyList_GET_SIZE(args[0]));
    if (records == NULL)
        return NULL;
    Batch *batch = PyMem_Calloc(1, sizeof(Batch));
    if (batch == NULL) {
        Py_DECREF(records);
        return PyErr_NoMemory();
    }
    batch->helpers = &PyTuple_GET_ITEM(args[1], 0);
    Buffer out = {NULL, 0, 0};
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *record = PyList_GET_ITEM(records, i);
        Py_ssize_t mark = out.size;
        int done = put_record(batch, &out, record);
        if (done < 0)
            goto end;
        if (done == 0)
            continue;
        out.size = mark;  /* the reference makes this one: record_to_json(record) + "\n" */
        PyObject *line = PyObject_CallOneArg(batch->helpers[H_RECORD], record);
        if (line == NULL)
            goto end;
        PyObject *encoded = PyUnicode_Check(line) ? PyUnicode_AsUTF8String(line) : NULL;
        Py_DECREF(line);
        if (encoded == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "record_to_json() must return a str");
            goto end;
        }
        int failed = put(&out, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded)) < 0
                     || PUT_LITERAL(&out, "\n") < 0;
        Py_DECREF(encoded);
        if (failed)
            goto end;
    }
    result = PyBytes_FromStringAndSize(out.data ? out.data : "", out.size);
end:
    cache_clear(&batch->strings);
    cache_clear(&batch->keys);
    cache_clear(&batch->threads);
    cache_clear(&batch->primitives);
    cache_clear(&batch->sites);
    PyMem_Free(batch);
    PyMem_Free(out.data);
    Py_DECREF(records);
    return result;
}
