/* tracedsync._speedups: the hot path of tracedsync.Lock in C.
 *
 * The pure-Python tracedsync.Lock (src/tracedsync/_lock.py) is the reference.
 * This module does not define a lock type of its own: install() turns
 * Lock.acquire/__enter__/acquire_lock, Lock.release/release_lock/_release_save
 * and Lock.__exit__ into C method descriptors of that same Python class.  They
 * read and write the class's __slots__ directly (at the offsets of its member
 * descriptors), and they are line-by-line transliterations of the Python
 * methods: the common case (an uncontended acquire with the defaults, its
 * release) runs here, and every other branch calls the very same Python
 * function the pure-Python method calls (_blocking.acquire_contended,
 * _lockorder.acquired/released, Lock._observe_acquired, Lock._release_observed,
 * _check_acquire_arguments, _site), looked up where the Python method looks it
 * up.  Anything unusual (unexpected arguments, a slot never set, no calling
 * frame) hands the whole call to the Python method itself, so errors are the
 * reference's own.
 *
 * GIL builds only: the slot updates rely on the GIL (as the Python code relies
 * on bytecode atomicity).  setup.py does not build this module for a
 * free-threaded interpreter, and _accel.py refuses it there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>

#ifdef Py_GIL_DISABLED
#error "tracedsync._speedups supports GIL builds of CPython only"
#endif

/* ---- what install() captures ------------------------------------------ */

typedef struct {
    Py_ssize_t lock, owner, acquired_code, acquired_offset, acquired_ns, weak_self, order_key,
        handoff;
} Offsets;

static Offsets off;
static PyObject *lock_class;        /* tracedsync._lock.Lock */
static PyObject *lock_globals;      /* tracedsync._lock.__dict__ */
static PyObject *hooks_dict;        /* tracedsync._hooks.__dict__ */
static PyObject *lockorder_dict;    /* tracedsync._lockorder.__dict__ */
static PyObject *blocking_dict;     /* tracedsync._blocking.__dict__ */
static PyObject *order_thread;      /* tracedsync._lockorder._per_thread */
static PyObject *internal_files;    /* tracedsync._sites.INTERNAL_FILES */
static PyObject *no_timeout;        /* tracedsync._lock.NO_TIMEOUT */
static PyObject *py_acquire;        /* the Python Lock.acquire */
static PyObject *py_release;        /* the Python Lock.release */
static PyObject *py_exit;           /* the Python _LockBase.__exit__ */
static PyObject *raw_lock_type;     /* _thread.LockType */
static PyObject *reported_errors;   /* tracedsync._errors.REPORTED_ERRORS */
static PyObject *raw_acquire;       /* _thread.LockType.acquire (method descriptor) */
static PyObject *raw_release;       /* _thread.LockType.release (method descriptor) */
static PyObject *minus_one, *zero;
static PyObject *held_key;          /* key of the held list in the thread state dict */

static PyObject *s_ordering, *s_active, *s_observing, *s_held, *s_acquire, *s_release,
    *s_blocking, *s_timeout, *s_site, *s_check, *s_acquired, *s_released,
    *s_acquire_contended, *s_observe_acquired, *s_release_observed;

#define SLOT(self, name) (*(PyObject **)((char *)(self) + off.name))

static inline void
set_slot(PyObject *self, Py_ssize_t offset, PyObject *value)
{
    PyObject **slot = (PyObject **)((char *)self + offset);
    PyObject *old = *slot;
    Py_INCREF(value);
    *slot = value;
    Py_XDECREF(old);
}

/* _hooks.ordering, .active and .observing, the flags the hot path reads,
 * cached until _hooks' globals change: 3.12+ watch the dict (PyDict_Watch),
 * 3.10 and 3.11 compare its version tag (PEP 509). */
enum { ORDERING, ACTIVE, OBSERVING };
static int flags[3];
static int flags_valid;
#if PY_VERSION_HEX >= 0x030C0000
static int hooks_watcher = -1;

static int
hooks_changed(PyDict_WatchEvent event, PyObject *dict, PyObject *key, PyObject *new_value)
{
    flags_valid = 0;
    return 0;
}
#define FLAGS_FRESH() (flags_valid)
#else
static uint64_t flags_version;
#define FLAGS_FRESH() (flags_valid && ((PyDictObject *)hooks_dict)->ma_version_tag == flags_version)
#endif

static int
load_flags(void)
{
    PyObject *names[3] = {s_ordering, s_active, s_observing};
    for (int i = 0; i < 3; i++) {
        PyObject *value = PyDict_GetItemWithError(hooks_dict, names[i]);
        if (value == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_AttributeError, names[i]);
            return -1;
        }
        int truth = PyObject_IsTrue(value);
        if (truth < 0)
            return -1;
        flags[i] = truth;
    }
#if PY_VERSION_HEX < 0x030C0000
    flags_version = ((PyDictObject *)hooks_dict)->ma_version_tag;
#endif
    flags_valid = 1;
    return 0;
}

/* _hooks.<flag> as a truth value (1, 0, -1 on error). */
static inline int
hook_flag(int which)
{
    if (!FLAGS_FRESH() && load_flags() < 0)
        return -1;
    return flags[which];
}

/* A global of a module (as the Python code reads it at call time): borrowed. */
static PyObject *
module_global(PyObject *dict, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(dict, name);
    if (value == NULL && !PyErr_Occurred())
        PyErr_SetObject(PyExc_NameError, name);
    return value;
}

/* Call func(self, *args, **kwargs) for a vectorcall (args, nargs, kwnames). */
static PyObject *
delegate(PyObject *func, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8];
    PyObject **stack = small;
    if (total + 1 > 8) {
        stack = PyMem_Malloc((total + 1) * sizeof(PyObject *));
        if (stack == NULL)
            return PyErr_NoMemory();
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < total; i++)
        stack[i + 1] = args[i];
    PyObject *result = PyObject_Vectorcall(func, stack, nargs + 1, kwnames);
    if (stack != small)
        PyMem_Free(stack);
    return result;
}

/* The calling thread's get_ident() as an int object, and (with need_held)
 * getattr(_lockorder._per_thread, "held", None): new references.  Both are
 * kept in the thread state's dict, in the list [ident, held list or None,
 * spare entry or None] (*record_out, borrowed; NULL without a thread state
 * dict): the held list is created once per thread and never replaced, and a
 * new thread state (as after a PyGILState re-entry) has a new dict.  The
 * ident is checked against the running thread's (fork).  The spare entry is
 * the last held-list entry release() popped, if nothing else refers to it:
 * the next acquire of the same lock at the same site reuses it instead of
 * building an equal tuple. */
enum { REC_IDENT, REC_HELD, REC_SPARE, REC_SIZE };

static int
thread_state(int need_held, PyObject **ident_out, PyObject **held_out, PyObject **record_out)
{
    unsigned long me = PyThread_get_thread_ident();
    PyObject *tdict = PyThreadState_GetDict();
    PyObject *record = NULL;
    *record_out = NULL;
    if (tdict != NULL) {
        record = PyDict_GetItemWithError(tdict, held_key);
        if (record == NULL && PyErr_Occurred())
            return -1;
        if (record != NULL
            && (!PyList_CheckExact(record) || PyList_GET_SIZE(record) != REC_SIZE
                || PyLong_AsUnsignedLong(PyList_GET_ITEM(record, REC_IDENT)) != me)) {
            PyErr_Clear();
            record = NULL;
        }
        if (record != NULL && (!need_held || PyList_GET_ITEM(record, REC_HELD) != Py_None)) {
            *ident_out = Py_NewRef(PyList_GET_ITEM(record, REC_IDENT));
            *held_out = need_held ? Py_NewRef(PyList_GET_ITEM(record, REC_HELD)) : NULL;
            *record_out = record;
            return 0;
        }
    }
    PyObject *ident = record != NULL ? Py_NewRef(PyList_GET_ITEM(record, REC_IDENT))
                                     : PyLong_FromUnsignedLong(me);
    if (ident == NULL)
        return -1;
    PyObject *held = NULL;
    if (need_held) {
        held = PyObject_GetAttr(order_thread, s_held);
        if (held == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                Py_DECREF(ident);
                return -1;
            }
            PyErr_Clear();
            held = Py_NewRef(Py_None);
        }
    }
    if (tdict != NULL) {
        PyObject *fresh = PyList_New(REC_SIZE);
        if (fresh == NULL) {
            Py_DECREF(ident);
            Py_XDECREF(held);
            return -1;
        }
        PyList_SET_ITEM(fresh, REC_IDENT, Py_NewRef(ident));
        PyList_SET_ITEM(fresh, REC_HELD,
                        Py_NewRef(held != NULL && PyList_CheckExact(held) ? held : Py_None));
        PyList_SET_ITEM(fresh, REC_SPARE, Py_NewRef(Py_None));
        if (PyDict_SetItem(tdict, held_key, fresh) < 0) {
            Py_DECREF(fresh);
            Py_DECREF(ident);
            Py_XDECREF(held);
            return -1;
        }
        *record_out = fresh;  /* the dict keeps it */
        Py_DECREF(fresh);
    }
    *ident_out = ident;
    *held_out = held;
    return 0;
}

/* The spare entry of record if it equals (reference, key, code, offset, None)
 * and nothing else refers to it (a new reference, taken out of the record),
 * else NULL. */
static PyObject *
take_spare(PyObject *record, PyObject *reference, PyObject *key, PyObject *code, PyObject *offset)
{
    if (record == NULL)
        return NULL;
    PyObject *spare = PyList_GET_ITEM(record, REC_SPARE);
    if (spare == Py_None || Py_REFCNT(spare) != 1 || !PyTuple_CheckExact(spare)
        || PyTuple_GET_SIZE(spare) != 5 || PyTuple_GET_ITEM(spare, 0) != reference
        || PyTuple_GET_ITEM(spare, 1) != key || PyTuple_GET_ITEM(spare, 2) != code
        || PyTuple_GET_ITEM(spare, 4) != Py_None)
        return NULL;
    PyObject *kept = PyTuple_GET_ITEM(spare, 3);
    if (kept != offset) {
        if (!PyLong_CheckExact(kept) || !PyLong_CheckExact(offset))
            return NULL;
        long a = PyLong_AsLong(kept), b = PyLong_AsLong(offset);
        if (a != b || (a == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return NULL;
        }
    }
    PyList_SET_ITEM(record, REC_SPARE, Py_NewRef(Py_None));
    return spare;  /* the record's reference, now the caller's */
}

/* Whether code's file is in INTERNAL_FILES (1, 0, -1 on error); the last
 * answer is kept for its code object while the set has not grown (files are
 * only ever added to it). */
static PyObject *last_code;
static Py_ssize_t last_files_size = -1;
static int last_internal;

static int
is_internal(PyObject *code)
{
    Py_ssize_t size = PySet_GET_SIZE(internal_files);
    if (code == last_code && size == last_files_size)
        return last_internal;
    int internal = PySet_Contains(internal_files, ((PyCodeObject *)code)->co_filename);
    if (internal < 0)
        return -1;
    Py_XSETREF(last_code, Py_NewRef(code));
    last_files_size = size;
    last_internal = internal;
    return internal;
}

#if PY_VERSION_HEX < 0x030D0000
/* The layout of _thread.lock objects in CPython 3.10-3.12 (Modules/
 * _threadmodule.c), checked at install() against the type's size and weak
 * reference offset: a non-blocking acquire and a release of a locked lock are
 * then exactly what lock.acquire(False) and lock.release() do, without a
 * method call.  3.13 made the lock a PyMutex: the methods are called there. */
#define RAW_LOCK_LAYOUT 1
typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock_lock;
    PyObject *in_weakreflist;
    char locked;
} raw_lockobject;
static int raw_layout_known;
#endif

/* self._lock.acquire(False) as a truth value (1, 0, -1 on error). */
static int
raw_try_acquire(PyObject *raw)
{
    PyObject *result;
#ifdef RAW_LOCK_LAYOUT
    if (raw_layout_known && Py_IS_TYPE(raw, (PyTypeObject *)raw_lock_type)) {
        raw_lockobject *lock = (raw_lockobject *)raw;
        if (PyThread_acquire_lock_timed(lock->lock_lock, 0, 0) == PY_LOCK_ACQUIRED) {
            lock->locked = 1;
            return 1;
        }
        return 0;
    }
#endif
    if (Py_IS_TYPE(raw, (PyTypeObject *)raw_lock_type)) {
        PyObject *stack[2] = {raw, Py_False};
        result = PyObject_Vectorcall(raw_acquire, stack, 2, NULL);
    }
    else {
        PyObject *stack[2] = {raw, Py_False};
        result = PyObject_VectorcallMethod(s_acquire, stack, 2, NULL);
    }
    if (result == NULL)
        return -1;
    int taken = result == Py_True ? 1 : result == Py_False ? 0 : PyObject_IsTrue(result);
    Py_DECREF(result);
    return taken;
}

static int
raw_do_release(PyObject *raw)
{
#ifdef RAW_LOCK_LAYOUT
    if (raw_layout_known && Py_IS_TYPE(raw, (PyTypeObject *)raw_lock_type)
        && ((raw_lockobject *)raw)->locked) {
        ((raw_lockobject *)raw)->locked = 0;
        PyThread_release_lock(((raw_lockobject *)raw)->lock_lock);
        return 0;
    }
#endif
    PyObject *stack[1] = {raw};
    PyObject *result = Py_IS_TYPE(raw, (PyTypeObject *)raw_lock_type)
                           ? PyObject_Vectorcall(raw_release, stack, 1, NULL)
                           : PyObject_VectorcallMethod(s_release, stack, 1, NULL);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* Whether every slot the C methods read is set (a subclass whose __init__ did
 * not call Lock.__init__ leaves them empty: the Python method then raises). */
static inline int
slots_ready(PyObject *self)
{
    return SLOT(self, lock) && SLOT(self, owner) && SLOT(self, weak_self) && SLOT(self, order_key)
           && SLOT(self, handoff) && SLOT(self, acquired_code) && SLOT(self, acquired_offset)
           && SLOT(self, acquired_ns);
}

/* ---- Lock.acquire ------------------------------------------------------- */

static PyObject *
lock_acquire_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

/* A finding's error (REPORTED_ERRORS) leaves acquire with no traceback: the
 * frames tracedsync's Python code added are its own, and the caller's frame,
 * where the C method was called, is added as the error leaves it.  So the
 * traceback ends at the user's call (the Python method keeps one frame). */
static void
trim_traceback(void)
{
    if (reported_errors == NULL || !PyErr_ExceptionMatches(reported_errors))
        return;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *error = PyErr_GetRaisedException();
    if (PyException_SetTraceback(error, Py_None) < 0)
        PyErr_Clear();
    PyErr_SetRaisedException(error);
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    Py_XDECREF(traceback);
    if (value != NULL && PyException_SetTraceback(value, Py_None) < 0)
        PyErr_Clear();
    PyErr_Restore(type, value, NULL);
#endif
}

static PyObject *
lock_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *result = lock_acquire_impl(self, args, nargs, kwnames);
    if (result == NULL)
        trim_traceback();
    return result;
}

static PyObject *
lock_acquire_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking = Py_True, *timeout = no_timeout;
    if (nargs > 2 || !slots_ready(self))
        return delegate(py_acquire, self, args, nargs, kwnames);
    if (nargs >= 1)
        blocking = args[0];
    if (nargs == 2)
        timeout = args[1];
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            int is_blocking = PyUnicode_Check(key) && PyUnicode_Compare(key, s_blocking) == 0;
            int is_timeout = PyUnicode_Check(key) && PyUnicode_Compare(key, s_timeout) == 0;
            if (is_blocking && nargs < 1)
                blocking = args[nargs + i];
            else if (is_timeout && nargs < 2)
                timeout = args[nargs + i];
            else  /* unknown or repeated: the Python method's TypeError */
                return delegate(py_acquire, self, args, nargs, kwnames);
        }
    }
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL)  /* called from C with no Python frame: _getframe(1) raises */
        return delegate(py_acquire, self, args, nargs, kwnames);

    PyObject *code = NULL, *offset = NULL, *held = NULL, *entry = NULL, *ident = NULL;
    PyObject *record;
    PyObject *result = NULL;

    /* if timeout != -1: _check_acquire_arguments(blocking, timeout) */
    if (timeout != no_timeout) {
        int differs = PyObject_RichCompareBool(timeout, minus_one, Py_NE);
        if (differs < 0)
            return NULL;
        if (differs) {
            PyObject *check = module_global(lock_globals, s_check);
            if (check == NULL)
                return NULL;
            PyObject *stack[2] = {blocking, timeout};
            PyObject *checked = PyObject_Vectorcall(check, stack, 2, NULL);
            if (checked == NULL)
                return NULL;
            Py_DECREF(checked);
        }
    }

    /* The caller's site: code object and bytecode offset (f_lasti). */
    code = (PyObject *)PyFrame_GetCode(frame);
#if PY_VERSION_HEX >= 0x030B0000
    offset = PyLong_FromLong(PyFrame_GetLasti(frame));
#else
    offset = PyLong_FromLong(frame->f_lasti < 0 ? -1 : frame->f_lasti * 2);
#endif
    if (offset == NULL)
        goto done;
    int internal = is_internal(code);
    if (internal < 0)
        goto done;
    if (internal) {  /* code, offset = _site(frame) */
        PyObject *site_func = module_global(lock_globals, s_site);
        if (site_func == NULL)
            goto done;
        PyObject *site = PyObject_CallOneArg(site_func, (PyObject *)frame);
        if (site == NULL)
            goto done;
        if (!PyTuple_CheckExact(site) || PyTuple_GET_SIZE(site) != 2) {
            Py_DECREF(site);
            PyErr_SetString(PyExc_TypeError, "_site() must return a (code, offset) pair");
            goto done;
        }
        Py_SETREF(code, Py_NewRef(PyTuple_GET_ITEM(site, 0)));
        Py_SETREF(offset, Py_NewRef(PyTuple_GET_ITEM(site, 1)));
        Py_DECREF(site);
    }

    /* _lockorder.acquired's commonest case, inlined (see the Python method). */
    int ordering = hook_flag(ORDERING);
    if (ordering < 0)
        goto done;
    if (thread_state(ordering, &ident, &held, &record) < 0)
        goto done;
    if (ordering && (SLOT(self, weak_self) == Py_None || held == Py_None)) {
        /* A lock's first acquisition or a thread's first lock: the Python
         * method makes their lock-order bookkeeping before the raw lock is
         * taken (nothing allocates between taking it and returning, so no
         * collection, no __del__ finding its own thread holding the lock). */
        result = delegate(py_acquire, self, args, nargs, kwnames);
        goto done;
    }
    if (ordering) {
        PyObject *reference = SLOT(self, weak_self);
        int empty;
        if (PyList_CheckExact(held))
            empty = PyList_GET_SIZE(held) == 0;
        else if (held == Py_None)
            empty = 0;
        else {
            int truth = PyObject_IsTrue(held);
            if (truth < 0)
                goto done;
            empty = !truth;
        }
        int handoff = 0;
        if (empty && reference != Py_None) {
            handoff = PyObject_IsTrue(SLOT(self, handoff));
            if (handoff < 0)
                goto done;
        }
        if (empty && reference != Py_None && !handoff) {
            PyObject *key = SLOT(self, order_key);
            entry = take_spare(record, reference, key, code, offset);
            if (entry == NULL && (entry = PyTuple_Pack(5, reference, key, code, offset, Py_None))
                                     == NULL)
                goto done;
        }
        else
            Py_CLEAR(held);
    }
    int taken = raw_try_acquire(SLOT(self, lock));
    if (taken < 0)
        goto done;
    if (taken) {
        set_slot(self, off.owner, ident);
        set_slot(self, off.acquired_code, code);
        set_slot(self, off.acquired_offset, offset);
        int active = hook_flag(ACTIVE);
        if (active < 0)
            goto done;
        if (active) {
            if (held != NULL) {
                if (PyList_CheckExact(held) ? PyList_Append(held, entry) < 0
                                            : (Py_XDECREF(PyObject_CallMethod(held, "append", "O",
                                                                             entry)),
                                               PyErr_Occurred() != NULL))
                    goto done;
            }
            else {
                int again = hook_flag(ORDERING);
                if (again < 0)
                    goto done;
                if (again) {  /* _lockorder.acquired(self, frame, blocking and timeout < 0) */
                    PyObject *may_raise;
                    int truth = PyObject_IsTrue(blocking);
                    if (truth < 0)
                        goto done;
                    if (!truth)
                        may_raise = Py_NewRef(blocking);
                    else if ((may_raise = PyObject_RichCompare(timeout, zero, Py_LT)) == NULL)
                        goto done;
                    PyObject *func = module_global(lockorder_dict, s_acquired);
                    PyObject *called = NULL;
                    if (func != NULL) {
                        PyObject *stack[3] = {self, (PyObject *)frame, may_raise};
                        called = PyObject_Vectorcall(func, stack, 3, NULL);
                    }
                    Py_DECREF(may_raise);
                    if (called == NULL)
                        goto done;
                    Py_DECREF(called);
                }
            }
            int observing = hook_flag(OBSERVING);
            if (observing < 0)
                goto done;
            if (observing) {  /* self._observe_acquired(code, offset, blocking, timeout) */
                PyObject *stack[5] = {self, code, offset, blocking, timeout};
                PyObject *called = PyObject_VectorcallMethod(
                    s_observe_acquired, stack, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
                if (called == NULL)
                    goto done;
                Py_DECREF(called);
            }
        }
        result = Py_NewRef(Py_True);
    }
    else {  /* _blocking.acquire_contended(self, blocking, timeout, frame) */
        PyObject *func = module_global(blocking_dict, s_acquire_contended);
        if (func != NULL) {
            PyObject *stack[4] = {self, blocking, timeout, (PyObject *)frame};
            result = PyObject_Vectorcall(func, stack, 4, NULL);
        }
    }
done:
    Py_XDECREF(code);
    Py_XDECREF(offset);
    Py_XDECREF(held);
    Py_XDECREF(entry);
    Py_XDECREF(ident);
    return result;
}

/* ---- Lock.release ------------------------------------------------------- */

/* Whether held[-1][0] is reference (held is a non-empty list). */
static inline int
innermost_is(PyObject *held, PyObject *reference)
{
    PyObject *last = PyList_GET_ITEM(held, PyList_GET_SIZE(held) - 1);
    if (PyTuple_CheckExact(last) && PyTuple_GET_SIZE(last) > 0)
        return PyTuple_GET_ITEM(last, 0) == reference;
    PyObject *first = PySequence_GetItem(last, 0);
    if (first == NULL)
        return -1;
    int same = first == reference;
    Py_DECREF(first);
    return same;
}

static PyObject *
release_impl(PyObject *self)
{
    int active = hook_flag(ACTIVE);
    if (active < 0)
        return NULL;
    if (active) {
        int ordering = hook_flag(ORDERING);
        if (ordering < 0)
            return NULL;
        if (ordering) {
            PyObject *held, *ident, *record;
            if (thread_state(1, &ident, &held, &record) < 0)
                return NULL;
            Py_DECREF(ident);
            int popped = 0;
            if (PyList_CheckExact(held) && PyList_GET_SIZE(held) > 0) {
                int same = innermost_is(held, SLOT(self, weak_self));
                if (same < 0) {
                    Py_DECREF(held);
                    return NULL;
                }
                if (same) {  /* held.pop(), keeping the entry as the spare */
                    Py_ssize_t size = PyList_GET_SIZE(held);
                    PyObject *entry = PyList_GET_ITEM(held, size - 1);
                    Py_SET_SIZE(held, size - 1);
                    if (record != NULL && Py_REFCNT(entry) == 1)
                        Py_SETREF(((PyListObject *)record)->ob_item[REC_SPARE], entry);
                    else
                        Py_DECREF(entry);
                    popped = 1;
                }
            }
            else if (!PyList_CheckExact(held) && held != Py_None) {
                /* Never happens (the list is tracedsync's own): the Python method. */
                Py_DECREF(held);
                PyErr_SetString(PyExc_TypeError, "tracedsync: unexpected held-lock list");
                return NULL;
            }
            Py_DECREF(held);
            if (!popped) {  /* _lockorder.released(self) */
                PyObject *func = module_global(lockorder_dict, s_released);
                if (func == NULL)
                    return NULL;
                PyObject *called = PyObject_CallOneArg(func, self);
                if (called == NULL)
                    return NULL;
                Py_DECREF(called);
            }
        }
        int observing = hook_flag(OBSERVING);
        if (observing < 0)
            return NULL;
        if (observing) {  /* self._release_observed(_getframe(1)) */
            PyFrameObject *frame = PyEval_GetFrame();
            if (frame == NULL) {
                PyErr_SetString(PyExc_ValueError, "call stack is not deep enough");
                return NULL;
            }
            PyObject *stack[2] = {self, (PyObject *)frame};
            PyObject *called = PyObject_VectorcallMethod(
                s_release_observed, stack, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (called == NULL)
                return NULL;
            Py_DECREF(called);
            Py_RETURN_NONE;
        }
    }
    PyObject *owner = Py_NewRef(SLOT(self, owner));
    set_slot(self, off.owner, Py_None);
    set_slot(self, off.acquired_ns, zero);
    if (owner != Py_None) {
        int differs;
        unsigned long me = PyThread_get_thread_ident();
        unsigned long value = PyLong_CheckExact(owner) ? PyLong_AsUnsignedLong(owner) : 0;
        if (PyLong_CheckExact(owner) && !(value == (unsigned long)-1 && PyErr_Occurred()))
            differs = value != me;
        else {
            PyErr_Clear();
            PyObject *ident = PyLong_FromUnsignedLong(me);
            if (ident == NULL) {
                Py_DECREF(owner);
                return NULL;
            }
            differs = PyObject_RichCompareBool(owner, ident, Py_NE);
            Py_DECREF(ident);
            if (differs < 0) {
                Py_DECREF(owner);
                return NULL;
            }
        }
        if (differs)
            set_slot(self, off.handoff, Py_True);
    }
    Py_DECREF(owner);
    if (raw_do_release(SLOT(self, lock)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
lock_release(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || !slots_ready(self))
        return delegate(py_release, self, args, nargs, kwnames);
    return release_impl(self);
}

/* _LockBase.__exit__: self.release() (a subclass's own release if it has one). */
static PyObject *
lock_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames)))
        return delegate(py_exit, self, args, nargs, kwnames);
    if ((PyObject *)Py_TYPE(self) == lock_class && slots_ready(self))
        return release_impl(self);
    PyObject *stack[1] = {self};
    return PyObject_VectorcallMethod(s_release, stack, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* ---- install ------------------------------------------------------------ */

static PyMethodDef acquire_def = {
    "acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_FASTCALL | METH_KEYWORDS,
    "acquire($self, /, blocking=True, timeout=-1)\n--\n\n"
    "Acquire the lock, as :meth:`threading.Lock.acquire`."};
static PyMethodDef release_def = {
    "release", (PyCFunction)(void (*)(void))lock_release, METH_FASTCALL | METH_KEYWORDS,
    "release($self, /)\n--\n\n"
    "Release the lock, as :meth:`threading.Lock.release` (any thread may)."};
static PyMethodDef exit_def = {
    "__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL | METH_KEYWORDS,
    "__exit__($self, exc_type, exc_value, traceback, /)\n--\n\n"};

static int
slot_offset(PyObject *descriptor, const char *name, Py_ssize_t *out)
{
    if (!Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s is not a slot", name);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
        PyErr_Format(PyExc_TypeError, "%s is not a writable object slot", name);
        return -1;
    }
    *out = member->offset;
    return 0;
}

static PyObject *
install(PyObject *module, PyObject *config)
{
    if (lock_class != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tracedsync._speedups is installed already");
        return NULL;
    }
    if (!PyDict_Check(config)) {
        PyErr_SetString(PyExc_TypeError, "install() takes a dict");
        return NULL;
    }
#define TAKE(var, key)                                                                   \
    do {                                                                                 \
        PyObject *v = PyDict_GetItemString(config, key);                                 \
        if (v == NULL) {                                                                 \
            PyErr_Format(PyExc_KeyError, "install() needs %s", key);                   \
            return NULL;                                                                 \
        }                                                                                \
        var = Py_NewRef(v);                                                              \
    } while (0)
#define OFFSET(field, key)                                                               \
    do {                                                                                 \
        PyObject *v = PyDict_GetItemString(config, key);                                 \
        if (v == NULL) {                                                                 \
            PyErr_Format(PyExc_KeyError, "install() needs %s", key);                   \
            return NULL;                                                                 \
        }                                                                                \
        if (slot_offset(v, key, &off.field) < 0)                                         \
            return NULL;                                                                 \
    } while (0)
    OFFSET(lock, "_lock");
    OFFSET(owner, "_owner");
    OFFSET(acquired_code, "_acquired_code");
    OFFSET(acquired_offset, "_acquired_offset");
    OFFSET(acquired_ns, "_acquired_ns");
    OFFSET(weak_self, "_weak_self");
    OFFSET(order_key, "_order_key");
    OFFSET(handoff, "_handoff");
    TAKE(lock_globals, "lock_globals");
    TAKE(hooks_dict, "hooks_globals");
    TAKE(lockorder_dict, "lockorder_globals");
    TAKE(blocking_dict, "blocking_globals");
    TAKE(order_thread, "order_thread");
    TAKE(internal_files, "internal_files");
    TAKE(no_timeout, "no_timeout");
    TAKE(py_acquire, "acquire");
    TAKE(py_release, "release");
    TAKE(py_exit, "exit");
    TAKE(raw_lock_type, "raw_lock_type");
    TAKE(lock_class, "cls");
    TAKE(reported_errors, "reported_errors");
#undef TAKE
#undef OFFSET
    if (!PyDict_Check(lock_globals) || !PyDict_Check(hooks_dict) || !PyDict_Check(lockorder_dict)
        || !PyDict_Check(blocking_dict) || !PySet_Check(internal_files)
        || !PyType_Check(lock_class)) {
        PyErr_SetString(PyExc_TypeError, "install(): unexpected configuration");
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (hooks_watcher < 0 && (hooks_watcher = PyDict_AddWatcher(hooks_changed)) < 0)
        return NULL;
    if (PyDict_Watch(hooks_watcher, hooks_dict) < 0)
        return NULL;
#endif
#ifdef RAW_LOCK_LAYOUT
    {
        PyTypeObject *raw = (PyTypeObject *)raw_lock_type;
        raw_layout_known = raw->tp_basicsize == sizeof(raw_lockobject)
                           && raw->tp_weaklistoffset == offsetof(raw_lockobject, in_weakreflist);
    }
#endif
    raw_acquire = PyObject_GetAttrString(raw_lock_type, "acquire");
    raw_release = PyObject_GetAttrString(raw_lock_type, "release");
    if (raw_acquire == NULL || raw_release == NULL)
        return NULL;
    PyTypeObject *type = (PyTypeObject *)lock_class;
    PyObject *acquire = PyDescr_NewMethod(type, &acquire_def);
    PyObject *release = PyDescr_NewMethod(type, &release_def);
    PyObject *exit = PyDescr_NewMethod(type, &exit_def);
    if (acquire == NULL || release == NULL || exit == NULL) {
        Py_XDECREF(acquire);
        Py_XDECREF(release);
        Py_XDECREF(exit);
        return NULL;
    }
    return Py_BuildValue("(NNN)", acquire, release, exit);
}

static PyMethodDef module_methods[] = {
    {"install", install, METH_O,
     "install(config)\n--\n\n"
     "Make C method descriptors of tracedsync._lock.Lock: (acquire, release, __exit__)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "tracedsync._speedups",
    "The hot path of tracedsync.Lock in C (see tracedsync._accel).", -1, module_methods};

#define INTERN(var, text)                                                                \
    do {                                                                                 \
        if ((var = PyUnicode_InternFromString(text)) == NULL)                            \
            return NULL;                                                                 \
    } while (0)

PyMODINIT_FUNC
PyInit__speedups(void)
{
    INTERN(s_ordering, "ordering");
    INTERN(s_active, "active");
    INTERN(s_observing, "observing");
    INTERN(s_held, "held");
    INTERN(s_acquire, "acquire");
    INTERN(s_release, "release");
    INTERN(s_blocking, "blocking");
    INTERN(s_timeout, "timeout");
    INTERN(s_site, "_site");
    INTERN(s_check, "_check_acquire_arguments");
    INTERN(s_acquired, "acquired");
    INTERN(s_released, "released");
    INTERN(s_acquire_contended, "acquire_contended");
    INTERN(s_observe_acquired, "_observe_acquired");
    INTERN(s_release_observed, "_release_observed");
    INTERN(held_key, "tracedsync._speedups.held");
    if ((minus_one = PyLong_FromLong(-1)) == NULL || (zero = PyLong_FromLong(0)) == NULL)
        return NULL;
    return PyModule_Create(&speedups_module);
}
