/* tracedsync._speedups: per-thread buffers of event records.
 *
 * Why: building a record tuple and calling the sinks costs more than the lock
 * operation itself.  While every sink is a recording's own list (a
 * tracedsync.record() Trace: see _hooks._deferring and add_sink's
 * takes_chunks), the C accelerator keeps the parts of its common events (a
 * Lock or RLock acquire with the defaults, a release by the owner) in a
 * buffer of the thread's instead, and hands a buffer on whole, as a chunk
 * (an immutable EventBuffer whose records() makes the records), to the
 * recordings' list.append:
 *
 * - when the buffer is full, or an event is for other sinks than what it
 *   holds (a recording started or stopped), in the thread that adds to it;
 * - on tracedsync_flush_all() (_hooks.flush_deferred), for every thread's
 *   buffer, the buffers of ended threads included: before a recording is
 *   read, and when a sink is removed.
 *
 * A recording replaces the chunks in its list by their records when it is
 * read (tracedsync_expand, _hooks.expand_chunks).  So a reader never misses
 * an event that happened before it read, and the records are the same, with
 * the same sequence numbers (a recording sorts by them); only when they are
 * made changes, and an event costs about 100 bytes until then.
 *
 * Each buffer is written by its own thread only, and emptied by a flush in
 * any thread.  Neither runs Python code while it changes a buffer (a flush
 * moves the entries to a new chunk first), so under the GIL each change is
 * atomic; free-threaded builds do not build this extension.  A buffer holds
 * strong references to what its records will hold (code objects, identities,
 * thread infos: never a lock), at most TRACEDSYNC_BUFFER_CAPACITY entries.
 * The registry holds every buffer; it is bounded like _hooks.spent: a new
 * buffer, once there are registry_limit of them, first hands on every
 * buffer's entries and forgets the buffers of ended threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_eventbuffers.h"

#define CAPACITY TRACEDSYNC_BUFFER_CAPACITY
/* The registry is pruned at this many buffers, or twice what the last pruning kept. */
#define REGISTRY_MINIMUM 64

typedef tracedsync_EventBuffer EventBuffer;

static void
clear_entry(tracedsync_Entry *entry)
{
    Py_CLEAR(entry->info);
    Py_CLEAR(entry->event);
    Py_CLEAR(entry->identity);
    Py_CLEAR(entry->code);
    Py_CLEAR(entry->offset);
    Py_CLEAR(entry->data);
    Py_CLEAR(entry->depth);
}

static void
buffer_dealloc(EventBuffer *self)
{
    /* Only the registry lets go of a buffer with entries, at interpreter
     * shutdown; its records are never read then. */
    for (Py_ssize_t i = 0; i < self->count; i++)
        clear_entry(&self->entries[i]);
    self->count = 0;
    Py_CLEAR(self->sinks);
    Py_CLEAR(self->records);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
buffer_length(EventBuffer *self)
{
    return self->count;
}

/* A chunk's records, in order (built once): a new reference. */
static PyObject *
chunk_records(EventBuffer *self)
{
    if (self->records != NULL)
        return Py_NewRef(self->records);
    PyObject *records = PyList_New(self->count);
    if (records == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->count; i++) {
        PyObject *record = tracedsync_entry_record(&self->entries[i]);
        if (record == NULL) {
            Py_DECREF(records);
            return NULL;
        }
        PyList_SET_ITEM(records, i, record);
    }
    if (self->records == NULL)  /* building them may have run Python code */
        self->records = Py_NewRef(records);
    return records;
}

static PySequenceMethods buffer_as_sequence = {
    .sq_length = (lenfunc)buffer_length,
};

static PyObject *
buffer_records(PyObject *self, PyObject *unused)
{
    return chunk_records((EventBuffer *)self);
}

static PyMethodDef buffer_methods[] = {
    {"records", buffer_records, METH_NOARGS,
     "records()\n--\n\nThe records of the events it holds, in order (built once)."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject EventBuffer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tracedsync._speedups.EventBuffer",
    .tp_basicsize = sizeof(EventBuffer),
    .tp_dealloc = (destructor)buffer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A thread's records kept for later, or a chunk of them (see _eventbuffers.c).",
    .tp_as_sequence = &buffer_as_sequence,
    .tp_methods = buffer_methods,
};

static PyObject *registry;                  /* list of EventBuffer */
static Py_ssize_t registry_limit = REGISTRY_MINIMUM;
static int flushing;                        /* tracedsync_flush_all() calls in progress */

/* The first of several errors, kept while the work goes on (see flush). */
typedef struct {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *error;
#else
    PyObject *type, *value, *traceback;
#endif
} FirstError;

/* Keep the current exception if it is the first, else drop it. */
static void
keep_error(FirstError *first)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (first->error == NULL)
        first->error = PyErr_GetRaisedException();
#else
    if (first->type == NULL)
        PyErr_Fetch(&first->type, &first->value, &first->traceback);
#endif
    PyErr_Clear();
}

/* Raise the kept exception, if any: 0, or -1 raised. */
static int
raise_kept(FirstError *first)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (first->error == NULL)
        return 0;
    PyErr_SetRaisedException(first->error);
#else
    if (first->type == NULL)
        return 0;
    PyErr_Restore(first->type, first->value, first->traceback);
#endif
    return -1;
}

PyObject *
tracedsync_buffer_new(void)
{
    if (registry == NULL) {
        if (PyType_Ready(&EventBuffer_Type) < 0 || (registry = PyList_New(0)) == NULL)
            return NULL;
    }
    if (PyList_GET_SIZE(registry) >= registry_limit && tracedsync_flush_all() < 0)
        return NULL;
    EventBuffer *buffer = PyObject_New(EventBuffer, &EventBuffer_Type);
    if (buffer == NULL)
        return NULL;
    buffer->sinks = NULL;
    buffer->records = NULL;
    buffer->count = 0;
    if (PyList_Append(registry, (PyObject *)buffer) < 0) {
        Py_DECREF(buffer);
        return NULL;
    }
    return (PyObject *)buffer;
}

int
tracedsync_buffer_flush(PyObject *buffer)
{
    EventBuffer *self = (EventBuffer *)buffer;
    Py_ssize_t count = self->count;
    if (count == 0)
        return 0;
    /* The entries move to a chunk, with no Python code run before the buffer
     * is empty again (see the top of this file). */
    EventBuffer *chunk = PyObject_New(EventBuffer, &EventBuffer_Type);
    if (chunk == NULL)
        return -1;
    memcpy(chunk->entries, self->entries, count * sizeof(tracedsync_Entry));
    chunk->count = count;
    chunk->sinks = NULL;
    chunk->records = NULL;
    self->count = 0;
    PyObject *sinks = self->sinks;
    self->sinks = NULL;
    int status = tracedsync_hand_on((PyObject *)chunk, sinks);
    Py_DECREF(chunk);
    Py_DECREF(sinks);
    return status;
}

int
tracedsync_flush_all(void)
{
    if (registry == NULL)
        return 0;
    FirstError first = {0};
    flushing++;
    /* By index: a buffer may be registered meanwhile. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(registry); i++) {
        PyObject *buffer = Py_NewRef(PyList_GET_ITEM(registry, i));
        if (tracedsync_buffer_flush(buffer) < 0)
            keep_error(&first);
        Py_DECREF(buffer);
    }
    flushing--;
    if (flushing == 0) {
        /* Forget the empty buffers that only the registry refers to: their
         * thread has ended (its thread state's dict let go of them). */
        for (Py_ssize_t i = PyList_GET_SIZE(registry) - 1; i >= 0; i--) {
            PyObject *buffer = PyList_GET_ITEM(registry, i);
            if (Py_REFCNT(buffer) == 1 && ((EventBuffer *)buffer)->count == 0
                && PyList_SetSlice(registry, i, i + 1, NULL) < 0) {
                keep_error(&first);
                break;
            }
        }
        Py_ssize_t kept = PyList_GET_SIZE(registry);
        registry_limit = kept * 2 > REGISTRY_MINIMUM ? kept * 2 : REGISTRY_MINIMUM;
    }
    return raise_kept(&first);
}

Py_ssize_t
tracedsync_buffer_count(void)
{
    return registry == NULL ? 0 : PyList_GET_SIZE(registry);
}

int
tracedsync_expand(PyObject *list, Py_ssize_t start)
{
    /* By index, looking the chunk up again after building its records (which
     * may run Python code): other threads only append meanwhile, or the
     * owner clears the list. */
    for (Py_ssize_t i = start; i < PyList_GET_SIZE(list); i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!Py_IS_TYPE(item, &EventBuffer_Type))
            continue;
        Py_INCREF(item);
        PyObject *records = chunk_records((EventBuffer *)item);
        if (records == NULL) {
            Py_DECREF(item);
            return -1;
        }
        Py_ssize_t at = i;
        if (at >= PyList_GET_SIZE(list) || PyList_GET_ITEM(list, at) != item) {
            for (at = PyList_GET_SIZE(list) - 1; at >= 0; at--)
                if (PyList_GET_ITEM(list, at) == item)
                    break;
        }
        int replaced = at < 0 ? 0 : PyList_SetSlice(list, at, at + 1, records);
        Py_ssize_t added = PyList_GET_SIZE(records);
        Py_DECREF(records);
        Py_DECREF(item);
        if (replaced < 0)
            return -1;
        i = at < 0 ? -1 : at + added - 1;  /* gone (cleared): from the start */
    }
    return 0;
}
