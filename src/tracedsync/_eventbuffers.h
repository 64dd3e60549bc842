/* tracedsync._speedups: per-thread buffers of event records (see _eventbuffers.c). */
#ifndef TRACEDSYNC_EVENTBUFFERS_H
#define TRACEDSYNC_EVENTBUFFERS_H

#include <Python.h>

/* What a lock event's record is made of, kept until the record is built: the
 * fields of _hooks.Record, with the operation's data either ready (data) or,
 * for a release, as its parts (held, and an RLock's depth).  Every pointer
 * is a strong reference or NULL. */
typedef struct {
    long long seq;      /* the sequence number */
    long long now;      /* monotonic_ns() of the event */
    PyObject *info;     /* the thread's _hooks.ThreadInfo */
    PyObject *event;    /* "lock.acquire", ... */
    PyObject *identity; /* the primitive's _hooks.Identity */
    PyObject *code;     /* the user's code object, or None */
    PyObject *offset;   /* its bytecode offset (int) */
    PyObject *data;     /* the record's data; NULL for a release, built from: */
    PyObject *held;     /* held_ns (int or None) */
    PyObject *depth;    /* an RLock release's depth (int), NULL for a Lock's */
} tracedsync_Entry;

/* A new, empty buffer, registered so that tracedsync_flush_all() reaches it
 * (a new reference).  May hand on the records of other buffers first (see
 * the registry's bound), so Python code may have run. */
PyObject *tracedsync_buffer_new(void);

/* Whether an entry for the sinks tuple sinks can be added without handing on
 * what the buffer holds first: it has room, and what it holds is for the
 * same sinks. */
int tracedsync_buffer_has_room(PyObject *buffer, PyObject *sinks);

/* Add entry (its references are stolen) for sinks; has_room must be true. */
void tracedsync_buffer_add(PyObject *buffer, PyObject *sinks, tracedsync_Entry *entry);

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
