/* tracedsync._speedups: per-thread buffers of event records (see _eventbuffers.c). */
#ifndef TRACEDSYNC_EVENTBUFFERS_H
#define TRACEDSYNC_EVENTBUFFERS_H

#include <Python.h>

/* What a lock event's record is made of, kept until the record is built: the
 * fields of _hooks.Record, with the operation's data either ready (data) or,
 * for a release, as its parts (held, and an RLock's depth).  Every pointer
 * is a strong reference or NULL. */
/* A release's held_ns when it has none (None): a hold is never negative. */
#define NO_HOLD (-1LL)

typedef struct {
    long long seq;      /* the sequence number */
    long long now;      /* monotonic_ns() of the event */
    PyObject *info;     /* the thread's _hooks.ThreadInfo */
    PyObject *event;    /* "lock.acquire", ... */
    PyObject *identity; /* the primitive's _hooks.Identity */
    PyObject *code;     /* the user's code object, or None */
    PyObject *offset;   /* its bytecode offset (int) */
    PyObject *data;     /* the record's data; NULL for a release, built from: */
    long long held_ns;  /* held_ns, or NO_HOLD for None */
    PyObject *depth;    /* an RLock release's depth (int), NULL for a Lock's */
} tracedsync_Entry;

/* A new, empty buffer, registered so that tracedsync_flush_all() reaches it
 * (a new reference).  May hand on the records of other buffers first (see
 * the registry's bound), so Python code may have run. */
PyObject *tracedsync_buffer_new(void);

/* Entries per buffer: how many records a thread keeps before handing them on. */
#define TRACEDSYNC_BUFFER_CAPACITY 64

/* A thread's buffer, or a chunk: what a buffer held when it was handed on
 * (immutable, with no sinks).  Here for the two inline functions below, the
 * hot path's. */
typedef struct {
    PyObject_HEAD
    PyObject *sinks;   /* the sinks tuple its entries are for (NULL while empty, and in a chunk) */
    PyObject *records; /* a chunk's records, once built (a list), else NULL */
    Py_ssize_t count;
    tracedsync_Entry entries[TRACEDSYNC_BUFFER_CAPACITY];
} tracedsync_EventBuffer;

/* Whether an entry for the sinks tuple sinks can be added without handing on
 * what the buffer holds first: it has room, and what it holds is for the
 * same sinks. */
static inline int
tracedsync_buffer_has_room(PyObject *buffer, PyObject *sinks)
{
    tracedsync_EventBuffer *self = (tracedsync_EventBuffer *)buffer;
    return self->count == 0 || (self->count < TRACEDSYNC_BUFFER_CAPACITY && self->sinks == sinks);
}

/* Add entry (its references are stolen) for sinks; has_room must be true. */
static inline void
tracedsync_buffer_add(PyObject *buffer, PyObject *sinks, const tracedsync_Entry *entry)
{
    tracedsync_EventBuffer *self = (tracedsync_EventBuffer *)buffer;
    if (self->count == 0) {
        PyObject *old = self->sinks;
        Py_INCREF(sinks);
        self->sinks = sinks;
        Py_XDECREF(old);
    }
    self->entries[self->count++] = *entry;
}

/* Hand on what buffer holds to the sinks it was kept for, as one chunk: an
 * object whose records() are the records, in order, and whose len() is how
 * many (see tracedsync_expand).  0, or -1 with an exception. */
int tracedsync_buffer_flush(PyObject *buffer);

/* Replace every chunk in list, from index start on, by its records: 0, or -1
 * with an exception. */
int tracedsync_expand(PyObject *list, Py_ssize_t start);

/* The same for every buffer; then forget the buffers of threads that have
 * ended. */
int tracedsync_flush_all(void);

/* How many buffers are registered (for the tests of the bound). */
Py_ssize_t tracedsync_buffer_count(void);

/* Defined in _speedups.c: entry's record tuple (a new reference). */
PyObject *tracedsync_entry_record(const tracedsync_Entry *entry);

/* Defined in _speedups.c: sink(item) for every sink of sinks, behind
 * _hooks.sink_failed's fault barrier. */
int tracedsync_hand_on(PyObject *item, PyObject *sinks);

#endif
