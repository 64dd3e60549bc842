/* tracedsync._speedups: the hot path of tracedsync.Lock and RLock in C.
 *
 * The pure-Python tracedsync.Lock and RLock (src/tracedsync/_lock.py) are the
 * reference.  This module does not define a lock type of its own: install()
 * turns Lock.acquire/__enter__/acquire_lock, Lock.release/release_lock/
 * _release_save and Lock.__exit__, and RLock.acquire/__enter__,
 * RLock.release, RLock.__exit__ and the Condition protocol (_release_save,
 * _acquire_restore, _is_owned), into
 * C method descriptors of those same Python classes.  They read and write the
 * classes' __slots__ directly (at the offsets of their member descriptors),
 * and they are line-by-line transliterations of the Python methods: the
 * common cases (an uncontended acquire with the defaults, an RLock's
 * recursive acquire by its owner, their releases) run here, and every other
 * branch calls the very same Python function the pure-Python method calls
 * (_blocking.acquire_contended, _lockorder.acquired/released,
 * _observe_acquired, Lock._release_observed, RLock._release_active,
 * _check_acquire_arguments, _site), looked up where the Python method looks
 * it up.  Anything unusual (unexpected arguments, a slot never set, no
 * calling frame) hands the whole call to the Python method itself, so errors
 * are the reference's own.  Lock and RLock share every function here: a Kind
 * says which class, slots and Python methods a call is about.
 *
 * GIL builds only: the slot updates rely on the GIL (as the Python code relies
 * on bytecode atomicity).  setup.py does not build this module for a
 * free-threaded interpreter, and _accel.py refuses it there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>

#include "_eventbuffers.h"

#ifdef Py_GIL_DISABLED
#error "tracedsync._speedups supports GIL builds of CPython only"
#endif

#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
/* 3.12 only: the interpreter's eval_breaker (see run_pending), which 3.13
 * made public per thread.  CPython's own headers, as Cython includes them. */
#  define Py_BUILD_CORE 1
#  undef _PyGC_FINALIZED
#  include "internal/pycore_interp.h"
#  undef Py_BUILD_CORE
#endif

/* ---- what install() captures ------------------------------------------ */

/* Slot offsets; handoff is -1 for RLock (a class attribute: never a handoff),
 * depth -1 for Lock (no recursion). */
typedef struct {
    Py_ssize_t lock, owner, held_list, acquired_code, acquired_offset, acquired_ns, weak_self,
        order_key, identity, handoff, depth;
} Offsets;

/* One accelerated class. */
typedef struct {
    PyObject *cls;         /* tracedsync._lock.Lock or RLock */
    int reentrant;         /* RLock */
    Offsets off;
    PyObject *py_acquire;  /* its Python acquire */
    PyObject *py_release;  /* its Python release */
    PyObject *py_exit;     /* the Python _LockBase.__exit__ */
    PyObject *py_acquire_restore;
    PyObject *py_release_save, *py_is_owned;  /* RLock's */
} Kind;

static Kind lock_kind, rlock_kind;
static PyObject *lock_globals;      /* tracedsync._lock.__dict__ */
static PyObject *hooks_dict;        /* tracedsync._hooks.__dict__ */
static PyObject *lockorder_dict;    /* tracedsync._lockorder.__dict__ */
static PyObject *blocking_dict;     /* tracedsync._blocking.__dict__ */
static PyObject *order_thread;      /* tracedsync._lockorder._per_thread */
static PyObject *internal_files;    /* tracedsync._sites.INTERNAL_FILES */
static PyObject *no_timeout;        /* tracedsync._lock.NO_TIMEOUT */
static PyObject *reported_errors;   /* tracedsync._errors.REPORTED_ERRORS */
static PyObject *raw_lock_type;     /* _thread.LockType */
static PyObject *raw_acquire;       /* _thread.LockType.acquire (method descriptor) */
static PyObject *raw_release;       /* _thread.LockType.release (method descriptor) */
static PyObject *minus_one, *zero, *one;
static PyObject *held_key;          /* key of the held list in the thread state dict */
static PyObject *whole_kwnames;     /* ("whole",) */
static PyObject *restore_kwnames;   /* ("quiet", "restoring") */
static PyObject *restoring_kwnames; /* ("restoring",) */
static PyObject *may_raise_kwnames; /* ("may_raise",) */

static PyObject *s_ordering, *s_active, *s_observing, *s_held, *s_acquire, *s_release,
    *s_blocking, *s_timeout, *s_site, *s_check, *s_acquired, *s_released,
    *s_acquire_contended, *s_observe_acquired, *s_release_observed, *s_release_active, *s_emit,
    *s_rlock_acquire, *s_info_epoch, *s_thread_info, *s_identity, *s_spent, *s_sinks,
    *s_room_check_at, *s_check_room, *s_sink_failed, *s_logging_debug, *s_render, *s_sequence,
    *s_release_edge, *s_acquired_data, *s_rlock_acquired_data, *s_lock_acquire, *s_lock_release,
    *s_rlock_release, *s_outcome, *s_held_ns, *s_depth, *s_error, *s_describe_error, *s_deliver, *s_charging,
    *s_run_pending, *s_prepare_lock, *s_thread_state, *s_after_acquire, *s_deferring;
static PyObject *debug_level;       /* _hooks.DEBUG */
static PyObject *acquired_data;     /* tracedsync._lock._ACQUIRED */
static PyObject *rlock_acquired_data;  /* tracedsync._lock._RLOCK_ACQUIRED */

/* A slot of self, for the Kind k in scope. */
#define SLOT(self, name) (*(PyObject **)((char *)(self) + k->off.name))

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

/* Bumped whenever _hooks.spent changes (see spent_of_me). */
static uint64_t spent_changes;

static int
hooks_changed(PyDict_WatchEvent event, PyObject *dict, PyObject *key, PyObject *new_value)
{
    if (dict == hooks_dict)
        flags_valid = 0;
    else  /* _hooks.spent, the other dict watched */
        spent_changes++;
    return 0;
}
#define FLAGS_FRESH() (flags_valid)
#else
static uint64_t flags_version;
#define FLAGS_FRESH() (flags_valid && ((PyDictObject *)hooks_dict)->ma_version_tag == flags_version)
#endif

/* What the recording path reads of _hooks' globals, cached with the flags
 * (strong references: a global rebound meanwhile invalidates the cache). */
static struct {
    PyObject *sinks;         /* _sinks */
    long long room_check_at; /* _room_check_at */
    int logging_debug;       /* _logging_debug */
    int charging;            /* _charging */
    int deferring;           /* _deferring */
    int release_edge_unset;  /* release_edge is None */
    PyObject *sequence;      /* sequence */
    PyObject *spent;         /* spent */
    PyObject *info_epoch;    /* _info_epoch */
} hooks;

static int
load_flags(void)
{
    PyObject *names[3] = {s_ordering, s_active, s_observing};
    PyObject *values[12];
    PyObject *wanted[9] = {s_sinks,    s_room_check_at, s_logging_debug, s_release_edge,
                           s_sequence, s_spent,         s_info_epoch,    s_charging,
                           s_deferring};
    for (int i = 0; i < 12; i++) {
        PyObject *name = i < 3 ? names[i] : wanted[i - 3];
        values[i] = PyDict_GetItemWithError(hooks_dict, name);
        if (values[i] == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_AttributeError, name);
            return -1;
        }
    }
    for (int i = 0; i < 3; i++) {
        int truth = PyObject_IsTrue(values[i]);
        if (truth < 0)
            return -1;
        flags[i] = truth;
    }
    long long check_at = PyLong_AsLongLong(values[4]);
    int debug = PyObject_IsTrue(values[5]);
    int charging = PyObject_IsTrue(values[10]);
    int deferring = PyObject_IsTrue(values[11]);
    if ((check_at == -1 && PyErr_Occurred()) || debug < 0 || charging < 0 || deferring < 0)
        return -1;
    if (!PyTuple_CheckExact(values[3]) || !PyDict_CheckExact(values[8])) {
        PyErr_SetString(PyExc_TypeError, "tracedsync: unexpected _hooks._sinks or spent");
        return -1;
    }
    Py_XSETREF(hooks.sinks, Py_NewRef(values[3]));
    hooks.room_check_at = check_at;
    hooks.logging_debug = debug;
    hooks.charging = charging;
    hooks.deferring = deferring;
    hooks.release_edge_unset = values[6] == Py_None;
    Py_XSETREF(hooks.sequence, Py_NewRef(values[7]));
    if (hooks.spent != values[8]) {  /* never rebound, as a rule */
#if PY_VERSION_HEX >= 0x030C0000
        if (PyDict_Watch(hooks_watcher, values[8]) < 0)
            return -1;
        spent_changes++;
#endif
        Py_XSETREF(hooks.spent, Py_NewRef(values[8]));
    }
    Py_XSETREF(hooks.info_epoch, Py_NewRef(values[9]));
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

/* The cached globals (see hooks), fresh: 0, or -1 on error. */
static inline int
hooks_fresh(void)
{
    return FLAGS_FRESH() || load_flags() == 0 ? 0 : -1;
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
 * thread info or None, the _hooks._info_epoch it was
 * read under, the thread's event buffer (see defer) or None] (*record_out, borrowed; NULL without a thread state dict): the held list is created once per thread and never replaced, and a
 * new thread state (as after a PyGILState re-entry) has a new dict.  The
 * ident is checked against the running thread's (fork). */
enum { REC_IDENT, REC_HELD, REC_INFO, REC_EPOCH, REC_BUFFER, REC_SIZE };

/* The calling thread's record, cached per OS thread (a borrowed reference)
 * with what proves it is still the one in its thread state's dict: the
 * thread state's unique id (never reused), that dict (replaced only while
 * the thread state is cleared) and the thread's ident (fork).  Only
 * thread_state() puts a record in the dict, and it updates the cache. */
/* One thread-local struct: one TLS address lookup per function. */
static _Thread_local struct {
    PyObject *record;
    PyObject *tdict;
    uint64_t tstate_id;
    unsigned long ident;
    /* spent_of_me's cache: */
    int spent_valid;
    long long spent;
    uint64_t spent_version;
    uint64_t spent_tstate;
} cached;

static void
cache_record(PyObject *record, PyObject *tdict, unsigned long me)
{
    cached.record = record;
    cached.tdict = tdict;
    cached.tstate_id = PyThreadState_GetID(PyThreadState_Get());
    cached.ident = me;
}

static int
thread_state(int need_held, PyObject **ident_out, PyObject **held_out, PyObject **record_out)
{
    unsigned long me = PyThread_get_thread_ident();
    PyObject *tdict = PyThreadState_GetDict();
    PyObject *record = cached.record;
    if (record != NULL && tdict == cached.tdict && me == cached.ident
        && PyThreadState_GetID(PyThreadState_Get()) == cached.tstate_id
        && (!need_held || PyList_GET_ITEM(record, REC_HELD) != Py_None)) {
        *ident_out = Py_NewRef(PyList_GET_ITEM(record, REC_IDENT));
        *held_out = need_held ? Py_NewRef(PyList_GET_ITEM(record, REC_HELD)) : NULL;
        *record_out = record;
        return 0;
    }
    record = NULL;
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
            cache_record(record, tdict, me);
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
        PyList_SET_ITEM(fresh, REC_INFO, Py_NewRef(Py_None));
        PyList_SET_ITEM(fresh, REC_EPOCH, Py_NewRef(Py_None));
        PyList_SET_ITEM(fresh, REC_BUFFER, Py_NewRef(Py_None));
        if (PyDict_SetItem(tdict, held_key, fresh) < 0) {
            Py_DECREF(fresh);
            Py_DECREF(ident);
            Py_XDECREF(held);
            return -1;
        }
        *record_out = fresh;  /* the dict keeps it */
        Py_DECREF(fresh);
        if (PyThreadState_GetDict() == tdict)  /* setting it ran no code that replaced it */
            cache_record(fresh, tdict, me);
        else
            cached.record = NULL;
    }
    *ident_out = ident;
    *held_out = held;
    return 0;
}

/* self._owner = owner, and self._held_list = None: the held list is kept
 * only by Lock's pure-Python hot path, for the acquisition it made (see
 * _lock.Lock.acquire); any other change of owner ends that acquisition. */
static inline void
set_owner(Kind *k, PyObject *self, PyObject *owner)
{
    set_slot(self, k->off.owner, owner);
    if (SLOT(self, held_list) != Py_None)
        set_slot(self, k->off.held_list, Py_None);
}

/* Before a raw lock is taken: do what the interpreter would do at its next
 * check (run a collection an allocation asked for, a signal handler, a
 * switch to another thread), as the Python acquire does with the calls it
 * makes before taking its raw lock.  From CPython 3.12 an allocation only
 * asks for a collection, which runs at the interpreter's next check: without
 * this, when the acquire returns, with the lock taken.  A __del__ the
 * collector runs there taking the lock waits for its own thread, where
 * threading.Lock (which allocates nothing) never runs Python code with its
 * lock taken.  PyEval_GetFrame() alone allocates, the first time a frame
 * asks (its frame object).  Entering a Python function (the empty
 * _lock._run_pending) is such a check; it is made only when something is
 * pending: the event bits (the low 8) of the thread's eval_breaker on 3.13+,
 * the interpreter's on 3.12.  Up to 3.11 a collection runs during the
 * allocation itself.  1 if Python code may have run, 0 if not, -1 with an
 * exception. */
static int
run_pending(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    if ((PyThreadState_GetUnchecked()->eval_breaker & 0xFF) == 0)
        return 0;
#elif PY_VERSION_HEX >= 0x030C0000
    if ((_Py_atomic_load_relaxed(&PyInterpreterState_Get()->ceval.eval_breaker) & 0xFF) == 0)
        return 0;
#endif
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *func = module_global(lock_globals, s_run_pending);
    if (func == NULL)
        return -1;
    PyObject *nothing = PyObject_CallNoArgs(func);
    if (nothing == NULL)
        return -1;
    Py_DECREF(nothing);
    return 1;
#else
    return 0;
#endif
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

/* The layout of _thread.lock objects in CPython 3.10-3.13 (Modules/
 * _threadmodule.c), checked at install() against the type's size and weak
 * reference offset: a non-blocking acquire and a release of a locked lock are
 * then exactly what lock.acquire(False) and lock.release() do, without a
 * method call.  3.14 made the lock a PyMutex: the method's C function is
 * called there (raw_acquire_function). */
#define RAW_LOCK_LAYOUT 1
typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock_lock;
    PyObject *in_weakreflist;
    char locked;
} raw_lockobject;
static int raw_layout_known;

/* Elsewhere (3.14+), the C function behind _thread.lock.acquire, called
 * directly with a ready argument: calling the method descriptor makes a new
 * (False,) tuple where the method takes METH_VARARGS, and that allocation
 * may ask for a collection, run as the acquire returns with the lock taken
 * (see run_pending).  NULL where the method's convention is not one of these
 * (the descriptor is called then). */
#if PY_VERSION_HEX < 0x030D0000  /* public names from 3.13 */
typedef _PyCFunctionFast PyCFunctionFast;
typedef _PyCFunctionFastWithKeywords PyCFunctionFastWithKeywords;
#endif
static PyCFunction raw_acquire_function;
static int raw_acquire_flags;
static PyObject *false_tuple;  /* (False,) */

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
        switch (raw_acquire_function != NULL ? raw_acquire_flags : 0) {
        case METH_VARARGS | METH_KEYWORDS:
            result = ((PyCFunctionWithKeywords)(void (*)(void))raw_acquire_function)(
                raw, false_tuple, NULL);
            break;
        case METH_VARARGS:
            result = raw_acquire_function(raw, false_tuple);
            break;
        case METH_FASTCALL | METH_KEYWORDS:
            result = ((PyCFunctionFastWithKeywords)(void (*)(void))raw_acquire_function)(
                raw, stack + 1, 1, NULL);
            break;
        case METH_FASTCALL:
            result = ((PyCFunctionFast)(void (*)(void))raw_acquire_function)(raw, stack + 1, 1);
            break;
        default:
            result = PyObject_Vectorcall(raw_acquire, stack, 2, NULL);
        }
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
slots_ready(Kind *k, PyObject *self)
{
    return SLOT(self, lock) && SLOT(self, owner) && SLOT(self, held_list) && SLOT(self, weak_self)
           && SLOT(self, order_key)
           && (k->off.handoff < 0 || SLOT(self, handoff)) && (k->off.depth < 0 || SLOT(self, depth))
           && SLOT(self, acquired_code) && SLOT(self, acquired_offset) && SLOT(self, acquired_ns)
           && SLOT(self, identity);
}

static inline int
no_arguments(Py_ssize_t nargs, PyObject *kwnames)
{
    return nargs == 0 && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0);
}

/* owner == get_ident() (1, 0, -1 on error). */
static int
is_me(PyObject *owner)
{
    unsigned long me = PyThread_get_thread_ident();
    if (owner == Py_None)
        return 0;
    if (PyLong_CheckExact(owner)) {
        unsigned long value = PyLong_AsUnsignedLong(owner);
        if (!(value == (unsigned long)-1 && PyErr_Occurred()))
            return value == me;
        PyErr_Clear();
    }
    PyObject *ident = PyLong_FromUnsignedLong(me);
    if (ident == NULL)
        return -1;
    int same = PyObject_RichCompareBool(owner, ident, Py_EQ);
    Py_DECREF(ident);
    return same;
}

/* PyEval_GetFrame(), or _getframe(1)'s ValueError (NULL). */
static PyFrameObject *
calling_frame(void)
{
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL)
        PyErr_SetString(PyExc_ValueError, "call stack is not deep enough");
    return frame;
}

/* _site(frame): the user's (code, offset), new references. */
static int
call_site(PyFrameObject *frame, PyObject **code, PyObject **offset)
{
    PyObject *site_func = module_global(lock_globals, s_site);
    if (site_func == NULL)
        return -1;
    PyObject *site = PyObject_CallOneArg(site_func, (PyObject *)frame);
    if (site == NULL)
        return -1;
    if (!PyTuple_CheckExact(site) || PyTuple_GET_SIZE(site) != 2) {
        Py_DECREF(site);
        PyErr_SetString(PyExc_TypeError, "_site() must return a (code, offset) pair");
        return -1;
    }
    *code = Py_NewRef(PyTuple_GET_ITEM(site, 0));
    *offset = Py_NewRef(PyTuple_GET_ITEM(site, 1));
    Py_DECREF(site);
    return 0;
}

/* The user's site of frame, as the Python methods find it: the frame's own
 * code object and bytecode offset, or _site(frame) when the frame is one of
 * tracedsync's (or threading's).  New references. */
static int
frame_site(PyFrameObject *frame, PyObject **code, PyObject **offset)
{
    *code = (PyObject *)PyFrame_GetCode(frame);
#if PY_VERSION_HEX >= 0x030B0000
    *offset = PyLong_FromLong(PyFrame_GetLasti(frame));
#else
    *offset = PyLong_FromLong(frame->f_lasti < 0 ? -1 : frame->f_lasti * 2);
#endif
    if (*offset == NULL) {
        Py_CLEAR(*code);
        return -1;
    }
    int internal = is_internal(*code);
    if (internal == 0)
        return 0;
    Py_CLEAR(*code);
    Py_CLEAR(*offset);
    if (internal < 0)
        return -1;
    return call_site(frame, code, offset);
}

/* ---- the event sequence ------------------------------------------------
 *
 * _hooks.sequence, once the accelerator is installed: an iterator of the
 * numbers from start on, as itertools.count, whose next number the C paths
 * take without making an int object (see next_sequence).  Under the GIL,
 * taking a number is atomic, from Python (next()) or from C. */
typedef struct {
    PyObject_HEAD
    long long next;
} SequenceObject;

static PyObject *
sequence_next(SequenceObject *self)
{
    return PyLong_FromLongLong(self->next++);
}

static PyObject *
sequence_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    long long start = 1;
    static char *names[] = {"start", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|L:Sequence", names, &start))
        return NULL;
    SequenceObject *self = (SequenceObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->next = start;
    return (PyObject *)self;
}

static PyObject *
sequence_repr(SequenceObject *self)
{
    return PyUnicode_FromFormat("Sequence(%lld)", self->next);
}

static PyTypeObject Sequence_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tracedsync._speedups.Sequence",
    .tp_basicsize = sizeof(SequenceObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Sequence(start=1)\n--\n\n"
              "The numbers from start on, one per next() (as itertools.count): "
              "tracedsync's event sequence.",
    .tp_new = sequence_new,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)sequence_next,
    .tp_repr = (reprfunc)sequence_repr,
};

/* next(_hooks.sequence), as a C number: 0, or -1 raised.  The cached
 * globals must be fresh (the caller checked, and no Python code ran since). */
static int
next_sequence(long long *out)
{
    if (Py_IS_TYPE(hooks.sequence, &Sequence_Type)) {
        *out = ((SequenceObject *)hooks.sequence)->next++;
        return 0;
    }
    PyObject *seq = PyIter_Next(hooks.sequence);
    if (seq == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetNone(PyExc_StopIteration);
        return -1;
    }
    *out = PyLong_AsLongLong(seq);
    Py_DECREF(seq);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* ---- recording: _hooks.publish and the locks' events in C --------------
 *
 * While something observes (a sink or debug logging), the common events of
 * Lock and RLock (an acquire with the default arguments, a release by the
 * owner) are built and handed to the sinks here, exactly as Lock and RLock's
 * _observe_acquired, Lock._release_observed, RLock._release_active and
 * _hooks.publish do in Python: the same sequence number, clock, record tuple
 * (see _hooks.RECORD_FIELDS) and sinks, the same fault barrier
 * (_hooks.sink_failed) and the same accounting of tracedsync's own time
 * (_hooks.spent).  Everything less common calls those Python methods. */

/* An int's value as a long long (0, or -1 raised).  For the nanosecond
 * counts (several digits of an int), PyLong_AsLongLong goes through a byte
 * array before 3.12; this does not. */
static int
as_long_long(PyObject *value, long long *out)
{
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C long long");
        return -1;
    }
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The object a lock's _acquired_ns keeps for a hold that started at ns (see
 * _lock._LockBase._acquired_ns): a float holding that whole number, since a
 * float comes from the interpreter's free list and an int this large is
 * allocated, then freed at the release.  Exact below 2**53 ns (104 days of
 * the monotonic clock), within a few nanoseconds beyond.  A new reference. */
static PyObject *
hold_start(long long ns)
{
    return PyFloat_FromDouble((double)ns);
}

/* time.monotonic_ns() */
static int
monotonic_ns(long long *out)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t now;
    if (PyTime_Monotonic(&now) < 0)
        return -1;
    *out = (long long)now;
#else
    *out = (long long)_PyTime_GetMonotonicClock();
#endif
    return 0;
}

/* _hooks.thread_info(), kept in the thread's record until _hooks._info_epoch
 * changes (bind_thread, fork): a new reference. */
static PyObject *
thread_info_of(PyObject *record)
{
    if (hooks_fresh() < 0)
        return NULL;
    PyObject *epoch = hooks.info_epoch;
    if (record != NULL && PyList_GET_ITEM(record, REC_EPOCH) == epoch
        && PyList_GET_ITEM(record, REC_INFO) != Py_None)
        return Py_NewRef(PyList_GET_ITEM(record, REC_INFO));
    PyObject *func = module_global(hooks_dict, s_thread_info);
    if (func == NULL)
        return NULL;
    Py_INCREF(epoch);  /* thread_info() may run code that changes it */
    PyObject *info = PyObject_CallNoArgs(func);
    if (info != NULL && record != NULL) {
        Py_SETREF(((PyListObject *)record)->ob_item[REC_INFO], Py_NewRef(info));
        Py_SETREF(((PyListObject *)record)->ob_item[REC_EPOCH], Py_NewRef(epoch));
    }
    Py_DECREF(epoch);
    return info;
}

/* _hooks.spent.get(ident, 0) */
static int
spent_of(PyObject *ident, long long *out)
{
    if (hooks_fresh() < 0)
        return -1;
    PyObject *value = PyDict_GetItemWithError(hooks.spent, ident);
    if (value == NULL) {
        *out = 0;
        return PyErr_Occurred() ? -1 : 0;
    }
    return as_long_long(value, out);
}

/* The version of _hooks.spent: a number that changes whenever it does (the
 * dict's own version tag before 3.12, which every change sets anew; a count
 * of the changes its watcher saw from 3.12, whose version tags are no longer
 * public). */
#if PY_VERSION_HEX >= 0x030C0000
#define SPENT_VERSION() (spent_changes)
#else
#define SPENT_VERSION() (((PyDictObject *)hooks.spent)->ma_version_tag)
#endif

/* spent_of(ident) for ident, the calling thread's get_ident(): read again
 * only when _hooks.spent has changed since (any thread's entry), cached per
 * OS thread and thread state (see cached).  The cached globals must be fresh
 * (the caller checked, and no Python code ran since). */
static int
spent_of_me(PyObject *ident, PyObject *record, long long *out)
{
    uint64_t version = SPENT_VERSION();
    /* record, if not NULL, is the thread's record thread_state() returned
     * during this operation: then the cache's thread state is this one. */
    uint64_t tstate = record != NULL && record == cached.record
                          ? cached.tstate_id
                          : PyThreadState_GetID(PyThreadState_Get());
    if (cached.spent_valid && cached.spent_version == version && cached.spent_tstate == tstate) {
        *out = cached.spent;
        return 0;
    }
    if (spent_of(ident, out) < 0)
        return -1;
    cached.spent = *out;
    cached.spent_version = version;  /* reading it changed nothing */
    cached.spent_tstate = tstate;
    cached.spent_valid = 1;
    return 0;
}

/* The current exception as an object (cleared). */
static PyObject *
fetch_error(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* for sink in sinks: sink(record), behind the fault barrier: a sink that
 * raises an Exception goes to _hooks.sink_failed (which removes it). */
int
tracedsync_hand_on(PyObject *record, PyObject *sinks)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(sinks); i++) {
        PyObject *sink = PyTuple_GET_ITEM(sinks, i);
        PyObject *result = PyObject_CallOneArg(sink, record);
        if (result != NULL) {
            Py_DECREF(result);
            continue;
        }
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;  /* not a fault (KeyboardInterrupt, ...): it passes through */
        PyObject *error = fetch_error();  /* sink_failed(sink, error): the fault barrier */
        PyObject *func = module_global(hooks_dict, s_sink_failed);
        PyObject *called = NULL;
        if (func != NULL) {
            PyObject *stack[2] = {sink, error};
            called = PyObject_Vectorcall(func, stack, 2, NULL);
        }
        Py_XDECREF(error);
        if (called == NULL)
            return -1;
        Py_DECREF(called);
    }
    return 0;
}

/* The record tuple (see _hooks.RECORD_FIELDS) of items, not tracked by the
 * collector when none of its items is: a tuple of untracked items is
 * untracked at the collector's first pass anyway (_PyTuple_MaybeUntrack), so
 * doing it now spares that pass.  A new reference. */
static PyObject *
record_of(PyObject *const items[9])
{
    PyObject *record = PyTuple_New(9);
    if (record == NULL)
        return NULL;
    int tracked = 0;
    for (int i = 0; i < 9; i++) {
        PyTuple_SET_ITEM(record, i, Py_NewRef(items[i]));
        tracked |= PyObject_GC_IsTracked(items[i]);
    }
    if (!tracked)
        PyObject_GC_UnTrack(record);
    return record;
}

/* A release's data: ("outcome", "released", "held_ns", held) for a Lock,
 * ("outcome", "released", "depth", depth, "held_ns", held) for an RLock,
 * held being held_ns or None (NO_HOLD).  A new reference. */
static PyObject *
release_data(long long held_ns, PyObject *depth)
{
    PyObject *held = held_ns == NO_HOLD ? Py_NewRef(Py_None) : PyLong_FromLongLong(held_ns);
    if (held == NULL)
        return NULL;
    PyObject *data = depth == NULL
                         ? PyTuple_Pack(4, s_outcome, s_released, s_held_ns, held)
                         : PyTuple_Pack(6, s_outcome, s_released, s_depth, depth, s_held_ns, held);
    if (data != NULL && !PyObject_GC_IsTracked(held)
        && (depth == NULL || !PyObject_GC_IsTracked(depth)))
        PyObject_GC_UnTrack(data);  /* strings, ints or None: see record_of */
    Py_DECREF(held);
    return data;
}

PyObject *
tracedsync_entry_record(const tracedsync_Entry *entry)
{
    PyObject *data = entry->data != NULL ? Py_NewRef(entry->data)
                                         : release_data(entry->held_ns, entry->depth);
    PyObject *time = data == NULL ? NULL : PyLong_FromLongLong(entry->now);
    PyObject *seq = time == NULL ? NULL : PyLong_FromLongLong(entry->seq);
    PyObject *record = NULL;
    if (seq != NULL) {
        PyObject *items[9] = {seq,             time,        entry->info,   entry->event, debug_level,
                              entry->identity, entry->code, entry->offset, data};
        record = record_of(items);
    }
    Py_XDECREF(data);
    Py_XDECREF(time);
    Py_XDECREF(seq);
    return record;
}

/* _hooks.publish(seq, now, event, self, code, offset, data) for a thread whose
 * record (from thread_state, may be NULL) is known; spent_known is the
 * thread's _hooks.spent entry if the caller has just read it, else -1.  A
 * sink that emits events itself charges its time to the thread as well,
 * which the charge here (started to ended) counts already. */
static int
publish(Kind *k, PyObject *self, PyObject *seq, long long now, PyObject *event, PyObject *code,
        PyObject *offset, PyObject *data, PyObject *thread_record, long long spent_known)
{
    int status = -1;
    PyObject *info = NULL, *found = NULL, *time = NULL, *record = NULL, *sinks = NULL;
    Py_XINCREF(thread_record);
    if (hooks_fresh() < 0 || (info = thread_info_of(thread_record)) == NULL)
        goto done;
    if (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) < 1) {
        PyErr_SetString(PyExc_TypeError, "tracedsync: unexpected thread info");
        goto done;
    }
    found = Py_NewRef(SLOT(self, identity));
    if (found == Py_None) {  /* found = identity(primitive) */
        Py_DECREF(found);
        PyObject *func = module_global(hooks_dict, s_identity);
        if (func == NULL || (found = PyObject_CallOneArg(func, self)) == NULL)
            goto done;
    }
    if ((time = PyLong_FromLongLong(now)) == NULL)
        goto done;
    PyObject *items[9] = {seq, time, info, event, debug_level, found, code, offset, data};
    if ((record = record_of(items)) == NULL)
        goto done;
    if (hooks_fresh() < 0)
        goto done;
    long long number = PyLong_AsLongLong(seq);
    if (number == -1 && PyErr_Occurred())
        goto done;
    if (number >= hooks.room_check_at) {  /* _check_room(seq) */
        PyObject *func = module_global(hooks_dict, s_check_room);
        PyObject *checked = func == NULL ? NULL : PyObject_CallOneArg(func, seq);
        if (checked == NULL)
            goto done;
        Py_DECREF(checked);
    }
    if (hooks_fresh() < 0)  /* _check_room may have changed them */
        goto done;
    long long started = 0;  /* only while handing on can take time: see _hooks._charging */
    if (hooks.charging && monotonic_ns(&started) < 0)
        goto done;
    sinks = Py_NewRef(hooks.sinks);  /* a sink may replace _sinks */
    if (tracedsync_hand_on(record, sinks) < 0)
        goto done;
    if (hooks_fresh() < 0)
        goto done;
    if (hooks.logging_debug) {  /* render(record) */
        PyObject *func = module_global(hooks_dict, s_render);
        PyObject *rendered = func == NULL ? NULL : PyObject_CallOneArg(func, record);
        if (rendered == NULL)
            goto done;
        Py_DECREF(rendered);
    }
    if (!started) {
        status = 0;
        goto done;
    }
    /* spent[ident] = spent.get(ident, 0) + monotonic_ns() - started */
    PyObject *ident = PyTuple_GET_ITEM(info, 0);
    long long ended, before;
    before = spent_known;  /* the caller's spent_of(ident), when it has it */
    if (monotonic_ns(&ended) < 0 || (spent_known < 0 && spent_of(ident, &before) < 0))
        goto done;
    PyObject *total = PyLong_FromLongLong(before + ended - started);
    if (total == NULL)
        goto done;
    int stored = PyDict_SetItem(hooks.spent, ident, total);  /* fresh: spent_of */
    Py_DECREF(total);
    if (stored < 0)
        goto done;
    status = 0;
done:
    Py_XDECREF(thread_record);
    Py_XDECREF(info);
    Py_XDECREF(found);
    Py_XDECREF(time);
    Py_XDECREF(record);
    Py_XDECREF(sinks);
    return status;
}

/* Keep an event's parts in the thread's buffer (see _eventbuffers.c) instead
 * of publishing it now: 1 when kept, 0 when the caller must publish it, -1 on
 * error.  Kept only while _hooks._deferring says every sink is a recording's
 * list (then nothing is charged or rendered either), below the sequence
 * number where a bounded sink may be full (_check_room runs on publishing),
 * for a primitive that has its identity already (identity() is Python), and
 * for a thread whose thread info is in its record (publishing puts it
 * there: thread_info() is Python).  A buffer that is full or holds records
 * for other sinks is handed on first, and the event published: handing on
 * may have run Python code that changed all of the above.  The cached
 * globals must be fresh (the caller checked, and no Python code ran since). */
static int
defer(PyObject *identity, long long seq, long long now, PyObject *event, PyObject *code,
      PyObject *offset, PyObject *data, long long held_ns, PyObject *depth,
      PyObject *thread_record)
{
    if (thread_record == NULL || identity == Py_None)
        return 0;
    if (!hooks.deferring || hooks.charging || hooks.logging_debug)
        return 0;
    if (seq >= hooks.room_check_at)
        return 0;
    PyObject *info = PyList_GET_ITEM(thread_record, REC_INFO);
    if (info == Py_None || PyList_GET_ITEM(thread_record, REC_EPOCH) != hooks.info_epoch)
        return 0;
    PyObject *buffer = PyList_GET_ITEM(thread_record, REC_BUFFER);
    if (buffer == Py_None) {
        Py_INCREF(thread_record);  /* the buffer's creation may run Python code */
        buffer = tracedsync_buffer_new();
        if (buffer != NULL)
            Py_SETREF(((PyListObject *)thread_record)->ob_item[REC_BUFFER], buffer);
        Py_DECREF(thread_record);
        return buffer == NULL ? -1 : 0;
    }
    if (!tracedsync_buffer_has_room(buffer, hooks.sinks)) {
        Py_INCREF(buffer);
        int flushed = tracedsync_buffer_flush(buffer);
        Py_DECREF(buffer);
        return flushed < 0 ? -1 : 0;
    }
    tracedsync_Entry entry = {
        .seq = seq,
        .now = now,
        .info = Py_NewRef(info),
        .event = Py_NewRef(event),
        .identity = Py_NewRef(identity),
        .code = Py_NewRef(code),
        .offset = Py_NewRef(offset),
        .data = Py_XNewRef(data),
        .held_ns = held_ns,
        .depth = Py_XNewRef(depth),
    };
    tracedsync_buffer_add(buffer, hooks.sinks, &entry);
    return 1;
}

/* The events of Lock and RLock's C paths: defer, else publish.  data is NULL
 * for a release (see release_data). */
static int
record_event(Kind *k, PyObject *self, long long seq, long long now, PyObject *event,
             PyObject *code, PyObject *offset, PyObject *data, long long held_ns, PyObject *depth,
             PyObject *thread_record, long long spent_known)
{
    PyObject *identity = Py_NewRef(SLOT(self, identity));  /* defer may run Python code */
    int kept =
        defer(identity, seq, now, event, code, offset, data, held_ns, depth, thread_record);
    Py_DECREF(identity);
    if (kept != 0)
        return kept < 0 ? -1 : 0;
    PyObject *built = data != NULL ? Py_NewRef(data) : release_data(held_ns, depth);
    PyObject *number = built == NULL ? NULL : PyLong_FromLongLong(seq);
    int status = number == NULL ? -1
                                : publish(k, self, number, now, event, code, offset, built,
                                          thread_record, spent_known);
    Py_XDECREF(built);
    Py_XDECREF(number);
    return status;
}

/* Whether the events of self can be built here: its class is the one
 * accelerated (a subclass may override the Python methods that build them)
 * and the data-race detector's release_edge is not set. */
static int
records_here(Kind *k, PyObject *self)
{
    if ((PyObject *)Py_TYPE(self) != k->cls)
        return 0;
    if (hooks_fresh() < 0) {
        PyErr_Clear();
        return 0;
    }
    return hooks.release_edge_unset;
}

/* self._observe_acquired(code, offset, blocking, timeout): the acquire event
 * of a fresh or (RLock) recursive acquisition, whose depth is already set. */
static int
observe_acquired(Kind *k, PyObject *self, PyObject *code, PyObject *offset, PyObject *blocking,
                 PyObject *timeout, PyObject *thread_record)
{
    PyObject *data = NULL;
    long depth = 1;
    if (blocking == Py_True && timeout == no_timeout && records_here(k, self)) {
        /* data = _ACQUIRED, or _RLOCK_ACQUIRED[depth] */
        PyObject *shared = k->reentrant ? rlock_acquired_data : acquired_data;
        if (!k->reentrant)
            data = shared;
        else if (PyTuple_CheckExact(shared) && PyLong_CheckExact(SLOT(self, depth))) {
            depth = PyLong_AsLong(SLOT(self, depth));
            if (depth == -1 && PyErr_Occurred())
                PyErr_Clear();
            else if (depth >= 0 && depth < PyTuple_GET_SIZE(shared))
                data = PyTuple_GET_ITEM(shared, depth);
        }
    }
    if (data == NULL) {  /* anything else: the Python method */
        PyObject *stack[5] = {self, code, offset, blocking, timeout};
        PyObject *called = PyObject_VectorcallMethod(s_observe_acquired, stack,
                                                     5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (called == NULL)
            return -1;
        Py_DECREF(called);
        return 0;
    }
    Py_INCREF(data);
    /* now = monotonic_ns(); base = now - spent.get(get_ident(), 0);
     * publish(next(_sequence), now, ...); self._acquired_ns = base */
    int status = -1;
    PyObject *ident = NULL, *base = NULL;
    long long seq, now, spent;
    ident = thread_record != NULL ? Py_NewRef(PyList_GET_ITEM(thread_record, REC_IDENT))
                                  : PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (ident == NULL || monotonic_ns(&now) < 0 || spent_of_me(ident, thread_record, &spent) < 0
        || next_sequence(&seq) < 0)
        goto done;
    if (record_event(k, self, seq, now, k->reentrant ? s_rlock_acquire : s_lock_acquire, code,
                     offset, data, NO_HOLD, NULL, thread_record, spent)
        < 0)
        goto done;
    if (depth == 1) {  /* a recursive acquire does not restart the hold */
        if ((base = hold_start(now - spent)) == NULL)
            goto done;
        set_slot(self, k->off.acquired_ns, base);
    }
    status = 0;
done:
    Py_DECREF(data);
    Py_XDECREF(ident);
    Py_XDECREF(base);
    return status;
}

/* _lockorder.acquired(self, frame, may_raise) */
static int
order_acquired(PyObject *self, PyFrameObject *frame, PyObject *may_raise)
{
    PyObject *func = module_global(lockorder_dict, s_acquired);
    if (func == NULL)
        return -1;
    PyObject *stack[3] = {self, (PyObject *)frame, may_raise};
    PyObject *called = PyObject_Vectorcall(func, stack, 3, NULL);
    if (called == NULL)
        return -1;
    Py_DECREF(called);
    return 0;
}

/* ---- acquire (Lock and RLock) ------------------------------------------- */

/* acquire()'s arguments as the Python signature binds them (blocking=True,
 * timeout=NO_TIMEOUT): 0, or 1 when the Python method must have the call
 * (too many, unknown or repeated arguments: its TypeError). */
static int
acquire_arguments(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  PyObject **blocking, PyObject **timeout)
{
    *blocking = Py_True;
    *timeout = no_timeout;
    if (nargs > 2)
        return 1;
    if (nargs >= 1)
        *blocking = args[0];
    if (nargs == 2)
        *timeout = args[1];
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            int is_blocking = PyUnicode_Check(key) && PyUnicode_Compare(key, s_blocking) == 0;
            int is_timeout = PyUnicode_Check(key) && PyUnicode_Compare(key, s_timeout) == 0;
            if (is_blocking && nargs < 1)
                *blocking = args[nargs + i];
            else if (is_timeout && nargs < 2)
                *timeout = args[nargs + i];
            else
                return 1;
        }
    }
    return 0;
}

static PyObject *
acquire_impl(Kind *k, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking, *timeout;
    if (!slots_ready(k, self) || acquire_arguments(args, nargs, kwnames, &blocking, &timeout))
        return delegate(k->py_acquire, self, args, nargs, kwnames);
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL)  /* called from C with no Python frame: _getframe(1) raises */
        return delegate(k->py_acquire, self, args, nargs, kwnames);

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

    if (k->reentrant) {  /* RLock: if self._owner == get_ident(): one level more */
        int mine = is_me(SLOT(self, owner));
        if (mine < 0)
            return NULL;
        if (mine) {
            PyObject *depth = PyNumber_Add(SLOT(self, depth), one);
            if (depth == NULL)
                return NULL;
            set_slot(self, k->off.depth, depth);
            Py_DECREF(depth);
            int observing = hook_flag(OBSERVING);
            if (observing < 0)
                return NULL;
            if (observing) {  /* code, offset = _site(_getframe(1)); self._observe_acquired */
                if (thread_state(0, &ident, &held, &record) < 0)
                    return NULL;
                Py_CLEAR(ident);
                if (call_site(frame, &code, &offset) < 0)
                    return NULL;
                int failed = observe_acquired(k, self, code, offset, blocking, timeout, record);
                Py_DECREF(code);
                Py_DECREF(offset);
                if (failed)
                    return NULL;
            }
            Py_RETURN_TRUE;
        }
    }

    /* The caller's site: code object and bytecode offset (f_lasti). */
    if (frame_site(frame, &code, &offset) < 0)
        goto done;

    /* _lockorder.acquired's commonest case, inlined (see Lock.acquire; RLock's
     * Python method calls _lockorder.prepared_entry and passes the entry to
     * _lockorder.acquired, which push it the same way). */
    int ordering = hook_flag(ORDERING);
    if (ordering < 0)
        goto done;
    if (thread_state(ordering, &ident, &held, &record) < 0)
        goto done;
    /* A lock's first acquisition, a thread's first lock: their lock-order
     * bookkeeping (it allocates) is made before the raw lock is taken, by the
     * Python functions the Python method calls. */
    if (ordering && SLOT(self, weak_self) == Py_None) {  /* _lockorder.prepare_lock(self) */
        PyObject *prepare = module_global(lockorder_dict, s_prepare_lock);
        PyObject *reference = prepare != NULL ? PyObject_CallOneArg(prepare, self) : NULL;
        if (reference == NULL)
            goto done;
        Py_DECREF(reference);
    }
    if (ordering && held == Py_None) {  /* _lockorder.thread_state() */
        PyObject *make = module_global(lockorder_dict, s_thread_state);
        PyObject *made = make != NULL ? PyObject_CallNoArgs(make) : NULL;
        if (made == NULL)
            goto done;
        Py_DECREF(made);
        Py_CLEAR(ident);
        Py_CLEAR(held);
        if (thread_state(ordering, &ident, &held, &record) < 0)
            goto done;
    }
    if (ordering && (SLOT(self, weak_self) == Py_None || held == Py_None)) {
        /* Never (both were just made): the Python method decides. */
        result = delegate(k->py_acquire, self, args, nargs, kwnames);
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
        if (empty && reference != Py_None && k->off.handoff >= 0) {
            handoff = PyObject_IsTrue(SLOT(self, handoff));
            if (handoff < 0)
                goto done;
        }
        if (empty && reference != Py_None && !handoff)
            entry = Py_NewRef(reference);  /* the bare entry: see _lockorder.Outermost */
        else
            Py_CLEAR(held);
    }
    int ran = run_pending();
    if (ran < 0)
        goto done;
    /* A __del__ run there may have left a lock held (its own bug): then this
     * acquire is a nested one, for the lock-order checker. */
    if (ran && held != NULL && PyList_CheckExact(held) && PyList_GET_SIZE(held) != 0) {
        Py_CLEAR(held);
        Py_CLEAR(entry);
    }
    int taken = raw_try_acquire(SLOT(self, lock));
    if (taken < 0)
        goto done;
    if (taken) {
        set_owner(k, self, ident);
        if (k->reentrant)
            set_slot(self, k->off.depth, one);
        set_slot(self, k->off.acquired_code, code);
        set_slot(self, k->off.acquired_offset, offset);
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
                    int failed = order_acquired(self, frame, may_raise);
                    Py_DECREF(may_raise);
                    if (failed)
                        goto done;
                }
            }
            int observing = hook_flag(OBSERVING);
            if (observing < 0)
                goto done;
            if (observing
                && observe_acquired(k, self, code, offset, blocking, timeout, record) < 0)
                goto done;
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

/* lock_<name> and rlock_<name>: the C methods of Lock and RLock, each
 * impl(kind, ...) for its class's Kind. */
#define PER_KIND(name, impl)                                                                 \
    static PyObject *lock_##name(PyObject *self, PyObject *const *args, Py_ssize_t nargs,    \
                                 PyObject *kwnames)                                          \
    {                                                                                        \
        return impl(&lock_kind, self, args, nargs, kwnames);                                 \
    }                                                                                        \
    static PyObject *rlock_##name(PyObject *self, PyObject *const *args, Py_ssize_t nargs,   \
                                  PyObject *kwnames)                                         \
    {                                                                                        \
        return impl(&rlock_kind, self, args, nargs, kwnames);                                \
    }

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

/* acquire_impl, with a finding's error trimmed to the user's call. */
static PyObject *
acquire_trimmed(Kind *k, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    PyObject *result = acquire_impl(k, self, args, nargs, kwnames);
    if (result == NULL)
        trim_traceback();
    return result;
}

PER_KIND(acquire, acquire_trimmed)

/* ---- release (Lock and RLock) ------------------------------------------- */

/* Whether held's last entry is reference's: held[-1][0] is reference, or
 * held[-1] is reference itself (the bare outermost entry the pure-Python hot
 * path pushes: see _lockorder.Outermost).  held is a non-empty list. */
static inline int
innermost_is(PyObject *held, PyObject *reference)
{
    PyObject *last = PyList_GET_ITEM(held, PyList_GET_SIZE(held) - 1);
    if (PyTuple_CheckExact(last) && PyTuple_GET_SIZE(last) > 0)
        return PyTuple_GET_ITEM(last, 0) == reference;
    if (last == reference)
        return 1;
    if (PyWeakref_CheckRefExact(last))  /* another lock's bare entry */
        return 0;
    PyObject *first = PySequence_GetItem(last, 0);
    if (first == NULL)
        return -1;
    int same = first == reference;
    Py_DECREF(first);
    return same;
}

/* _lockorder.released(self), its commonest case inlined (Lock.release):
 *     held = getattr(_order_thread, "held", None)
 *     if held and held[-1][0] is self._weak_self: held.pop()
 *     else: _lockorder.released(self) */
static int
forget_held(Kind *k, PyObject *self, PyObject **record_out)
{
    PyObject *held, *ident, *record;
    if (record_out != NULL)
        *record_out = NULL;
    if (thread_state(1, &ident, &held, &record) < 0)
        return -1;
    Py_DECREF(ident);
    int popped = 0;
    if (PyList_CheckExact(held) && PyList_GET_SIZE(held) > 0) {
        int same = innermost_is(held, SLOT(self, weak_self));
        if (same < 0) {
            Py_DECREF(held);
            return -1;
        }
        if (same) {  /* held.pop() */
            Py_ssize_t size = PyList_GET_SIZE(held);
            PyObject *entry = PyList_GET_ITEM(held, size - 1);
            Py_SET_SIZE(held, size - 1);
            Py_DECREF(entry);
            popped = 1;
        }
    }
    else if (!PyList_CheckExact(held) && held != Py_None) {
        /* Never happens (the list is tracedsync's own). */
        Py_DECREF(held);
        PyErr_SetString(PyExc_TypeError, "tracedsync: unexpected held-lock list");
        return -1;
    }
    Py_DECREF(held);
    if (!popped) {  /* _lockorder.released(self) */
        PyObject *func = module_global(lockorder_dict, s_released);
        if (func == NULL)
            return -1;
        PyObject *called = PyObject_CallOneArg(func, self);
        if (called == NULL)
            return -1;
        Py_DECREF(called);
    }
    else if (record_out != NULL)
        *record_out = record;
    return 0;
}

/* The raw release once the owner is cleared: self._owner = None,
 * self._acquired_ns = 0, self._lock.release(). */
static int
unlock(Kind *k, PyObject *self)
{
    set_owner(k, self, Py_None);
    set_slot(self, k->off.acquired_ns, zero);
    return raw_do_release(SLOT(self, lock));
}

/* held_ns of a release at now: max(0, now - spent - acquired_ns) if
 * acquired_ns else None (NO_HOLD), spent being tracedsync's time in the
 * holder so far (see _hooks.spent).  acquired_ns is an int or, made by
 * hold_start, a float.  0, or -1 raised. */
static int
held_for(long long now, long long spent, PyObject *acquired_ns, long long *held_ns)
{
    long long since;
    if (PyFloat_CheckExact(acquired_ns))
        since = (long long)PyFloat_AS_DOUBLE(acquired_ns);
    else if (as_long_long(acquired_ns, &since) < 0)
        return -1;
    long long held = now - spent - since;
    *held_ns = since == 0 ? NO_HOLD : held > 0 ? held : 0;
    return 0;
}

/* seq, now = next(_sequence), monotonic_ns(): 0, or -1 raised. */
static int
stamp(long long *seq, long long *now)
{
    return hooks_fresh() < 0 || next_sequence(seq) < 0 || monotonic_ns(now) < 0 ? -1 : 0;
}

/* Lock._release_observed(frame) (its caller has told the order checker),
 * for an owned lock of the accelerated class with no release_edge; record
 * is the thread's record (see thread_state) if the caller has it, else NULL. */
static PyObject *
lock_release_recorded(Kind *k, PyObject *self, PyFrameObject *frame, PyObject *record)
{
    PyObject *result = NULL, *acquired = NULL, *owner = NULL, *code = NULL, *offset = NULL,
             *ident = NULL, *holder_held;
    long long seq, now, held_ns;
    if (stamp(&seq, &now) < 0)
        return NULL;
    acquired = Py_NewRef(SLOT(self, acquired_ns));
    set_slot(self, k->off.acquired_ns, zero);
    owner = Py_NewRef(SLOT(self, owner));
    set_owner(k, self, Py_None);
    int mine = 0;
    if (owner != Py_None) {
        /* The acquire stored the thread record's own ident object. */
        mine = record != NULL && owner == PyList_GET_ITEM(record, REC_IDENT) ? 1 : is_me(owner);
        if (mine < 0)
            goto done;
        if (!mine)
            set_slot(self, k->off.handoff, Py_True);
    }
    if (raw_do_release(SLOT(self, lock)) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_RuntimeError))
            goto done;
        /* _hooks.deliver((seq, now), "lock.release", self, frame,
         *                {"outcome": "error", "error": describe_error(error)}); raise */
        PyObject *error = fetch_error();
        PyObject *describe = module_global(hooks_dict, s_describe_error);
        PyObject *deliver = describe == NULL ? NULL : module_global(hooks_dict, s_deliver);
        PyObject *text = deliver == NULL ? NULL : PyObject_CallOneArg(describe, error);
        PyObject *fields = text == NULL ? NULL
                                        : Py_BuildValue("{sOsO}", "outcome", s_error, "error",
                                                        text);
        PyObject *stamped = fields == NULL ? NULL : Py_BuildValue("(LL)", seq, now);
        PyObject *delivered = NULL;
        if (stamped != NULL) {
            PyObject *stack[5] = {stamped, s_lock_release, self, (PyObject *)frame, fields};
            delivered = PyObject_Vectorcall(deliver, stack, 5, NULL);
        }
        Py_XDECREF(text);
        Py_XDECREF(fields);
        Py_XDECREF(stamped);
        if (delivered == NULL) {
            Py_XDECREF(error);
            goto done;
        }
        Py_DECREF(delivered);
#if PY_VERSION_HEX >= 0x030C0000
        PyErr_SetRaisedException(error);
#else
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
#endif
        goto done;
    }
    long long spent;  /* the holder's: spent.get(owner or 0, 0) */
    if ((mine ? spent_of_me(owner, record, &spent)
              : spent_of(owner == Py_None ? zero : owner, &spent))
            < 0
        || held_for(now, spent, acquired, &held_ns) < 0
        || frame_site(frame, &code, &offset) < 0
        || (record == NULL && thread_state(0, &ident, &holder_held, &record) < 0))
        goto done;
    if (record_event(k, self, seq, now, s_lock_release, code, offset, NULL, held_ns, NULL, record,
                     mine ? spent : -1)
        < 0)
        goto done;
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(acquired);
    Py_XDECREF(owner);
    Py_XDECREF(code);
    Py_XDECREF(offset);
    Py_XDECREF(ident);
    return result;
}

/* RLock._release_active(frame, 1, whole=False), for the owner, of the
 * accelerated class, with no release_edge: one level released. */
static PyObject *
rlock_release_recorded(Kind *k, PyObject *self, PyFrameObject *frame)
{
    PyObject *result = NULL, *depth = NULL, *code = NULL, *offset = NULL, *ident = NULL,
             *holder_held, *record;
    long long seq, now, held_ns = NO_HOLD;
    int last = PyLong_CheckExact(SLOT(self, depth)) ? PyLong_AsLong(SLOT(self, depth)) == 1
                                                    : PyObject_RichCompareBool(SLOT(self, depth),
                                                                               one, Py_EQ);
    if (last < 0 || PyErr_Occurred())
        return NULL;
    if (last) {  /* if ordering (and the owner releases its last level): released(self) */
        int ordering = hook_flag(ORDERING);
        if (ordering < 0 || (ordering && forget_held(k, self, NULL) < 0))
            return NULL;
    }
    if (stamp(&seq, &now) < 0
        || thread_state(0, &ident, &holder_held, &record) < 0
        || (depth = PyNumber_Subtract(SLOT(self, depth), one)) == NULL)
        goto done;
    set_slot(self, k->off.depth, depth);
    int unlocks = PyObject_RichCompareBool(depth, zero, Py_EQ);
    if (unlocks < 0)
        goto done;
    long long spent = -1;
    if (unlocks) {
        if (spent_of_me(ident, record, &spent) < 0
            || held_for(now, spent, SLOT(self, acquired_ns), &held_ns) < 0)
            goto done;
        if (unlock(k, self) < 0)
            goto done;
    }
    if (frame_site(frame, &code, &offset) < 0
        || record_event(k, self, seq, now, s_rlock_release, code, offset, NULL, held_ns, depth,
                        record, spent)
               < 0)
        goto done;
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(depth);
    Py_XDECREF(code);
    Py_XDECREF(offset);
    Py_XDECREF(ident);
    return result;
}

/* Lock.release */
static PyObject *
lock_release_impl(Kind *k, PyObject *self)
{
    int active = hook_flag(ACTIVE);
    if (active < 0)
        return NULL;
    /* The thread's record, when forget_held found it with no Python code run:
     * complete (it has a held list), so nothing replaces it. */
    PyObject *record = NULL;
    if (active) {
        int ordering = hook_flag(ORDERING);
        if (ordering < 0 || (ordering && forget_held(k, self, &record) < 0))
            return NULL;
        int observing = hook_flag(OBSERVING);
        if (observing < 0)
            return NULL;
        if (observing) {  /* self._release_observed(_getframe(1)) */
            PyFrameObject *frame = calling_frame();
            if (frame == NULL)
                return NULL;
            int here = records_here(k, self) && SLOT(self, owner) != Py_None;
            if (here)
                return lock_release_recorded(k, self, frame, record);
            PyObject *stack[2] = {self, (PyObject *)frame};
            PyObject *called = PyObject_VectorcallMethod(
                s_release_observed, stack, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (called == NULL)
                return NULL;
            Py_DECREF(called);
            Py_RETURN_NONE;
        }
    }
    /* if owner is not None and owner != get_ident(): self._handoff = True
     * (the acquire stored the thread record's own ident object) */
    PyObject *owner = Py_NewRef(SLOT(self, owner));
    int mine = 1;
    if (owner != Py_None && !(record != NULL && owner == PyList_GET_ITEM(record, REC_IDENT)))
        mine = is_me(owner);
    Py_DECREF(owner);
    if (mine < 0)
        return NULL;
    if (!mine)
        set_slot(self, k->off.handoff, Py_True);
    if (unlock(k, self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* if self._owner != get_ident(): raise RuntimeError(...) (0, or -1 raised) */
static int
check_owner(Kind *k, PyObject *self)
{
    int mine = is_me(SLOT(self, owner));
    if (mine == 0)
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
    return mine == 1 ? 0 : -1;
}

/* RLock.release (save == 0) and RLock._release_save (save == 1: every
 * level, its state returned). */
static PyObject *
rlock_release_impl(Kind *k, PyObject *self, int save)
{
    PyObject *state = NULL;
    if (save) {  /* owner check, state = (depth, owner), before anything else */
        if (check_owner(k, self) < 0)
            return NULL;
        if ((state = PyTuple_Pack(2, SLOT(self, depth), SLOT(self, owner))) == NULL)
            return NULL;
    }
    int observing = hook_flag(OBSERVING);
    if (observing < 0)
        goto error;
    if (observing) {  /* self._release_active(_getframe(1), levels, whole=save) */
        PyFrameObject *frame = calling_frame();
        if (frame == NULL)
            goto error;
        if (!save && records_here(k, self)) {
            int mine = is_me(SLOT(self, owner));
            if (mine < 0)
                goto error;
            if (mine)
                return rlock_release_recorded(k, self, frame);
        }
        PyObject *stack[4] = {self, (PyObject *)frame,
                              save ? PyTuple_GET_ITEM(state, 0) : one,
                              save ? Py_True : Py_False};
        PyObject *called = PyObject_VectorcallMethod(
            s_release_active, stack, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, whole_kwnames);
        if (called == NULL)
            goto error;
        Py_DECREF(called);
        return save ? state : Py_NewRef(Py_None);
    }
    int last = 1;
    if (!save) {  /* if self._owner != get_ident(): raise; self._depth -= 1 */
        if (check_owner(k, self) < 0)
            return NULL;
        PyObject *depth = PyNumber_Subtract(SLOT(self, depth), one);
        if (depth == NULL)
            return NULL;
        set_slot(self, k->off.depth, depth);
        last = PyLong_CheckExact(depth) ? PyLong_AsLong(depth) == 0
                                        : PyObject_RichCompareBool(depth, zero, Py_EQ);
        Py_DECREF(depth);
        if (last < 0 || PyErr_Occurred())
            return NULL;
    }
    if (last) {
        int ordering = hook_flag(ORDERING);
        if (ordering < 0 || (ordering && forget_held(k, self, NULL) < 0))
            goto error;
        if (save)
            set_slot(self, k->off.depth, zero);
        if (unlock(k, self) < 0)
            goto error;
    }
    return save ? state : Py_NewRef(Py_None);
error:
    Py_XDECREF(state);
    return NULL;
}

static PyObject *
release_impl(Kind *k, PyObject *self)
{
    return k->reentrant ? rlock_release_impl(k, self, 0) : lock_release_impl(k, self);
}

static PyObject *
release_method(Kind *k, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    if (!no_arguments(nargs, kwnames) || !slots_ready(k, self))
        return delegate(k->py_release, self, args, nargs, kwnames);
    return release_impl(k, self);
}

PER_KIND(release, release_method)

/* _LockBase.__exit__: self.release() (a subclass's own release if it has one). */
static PyObject *
exit_impl(Kind *k, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames)))
        return delegate(k->py_exit, self, args, nargs, kwnames);
    if ((PyObject *)Py_TYPE(self) == k->cls && slots_ready(k, self))
        return release_impl(k, self);
    PyObject *stack[1] = {self};
    return PyObject_VectorcallMethod(s_release, stack, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

PER_KIND(exit, exit_impl)

/* ---- RLock: the protocol threading.Condition uses ----------------------- */

static PyObject *
rlock_release_save(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!no_arguments(nargs, kwnames) || !slots_ready(&rlock_kind, self))
        return delegate(rlock_kind.py_release_save, self, args, nargs, kwnames);
    return rlock_release_impl(&rlock_kind, self, 1);
}

/* return self._owner == get_ident() */
static PyObject *
rlock_is_owned(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Kind *k = &rlock_kind;
    if (!no_arguments(nargs, kwnames) || !slots_ready(k, self))
        return delegate(k->py_is_owned, self, args, nargs, kwnames);
    int mine = is_me(SLOT(self, owner));
    if (mine < 0)
        return NULL;
    return PyBool_FromLong(mine);
}

/* Lock._acquire_restore(state): take the lock back after a Condition wait,
 * as the Python method does; as RLock's, the raw lock is taken with nothing
 * allocated after it (see run_pending) before the owner is stored. */
static PyObject *
lock_acquire_restore(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Kind *k = &lock_kind;
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || !slots_ready(k, self))
        return delegate(k->py_acquire_restore, self, args, nargs, kwnames);
    PyFrameObject *frame = calling_frame();
    if (frame == NULL)
        return NULL;
    PyObject *code, *offset, *ident;
    if (call_site(frame, &code, &offset) < 0)  /* code, offset = _site(frame) */
        return NULL;
    if ((ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident())) == NULL
        || run_pending() < 0) {
        Py_XDECREF(ident);
        Py_DECREF(code);
        Py_DECREF(offset);
        return NULL;
    }
    int taken = raw_try_acquire(SLOT(self, lock));
    if (taken > 0) {  /* self._take(code, offset) */
        set_owner(k, self, ident);
        set_slot(self, k->off.acquired_code, code);
        set_slot(self, k->off.acquired_offset, offset);
    }
    Py_DECREF(ident);
    Py_DECREF(code);
    Py_DECREF(offset);
    if (taken < 0)
        return NULL;
    PyObject *called;
    if (taken) {
        int active = hook_flag(ACTIVE);
        if (active < 0)
            return NULL;
        if (!active)
            Py_RETURN_NONE;
        /* self._after_acquire(frame, True, -1, may_raise=False) */
        PyObject *stack[5] = {self, (PyObject *)frame, Py_True, minus_one, Py_False};
        called = PyObject_VectorcallMethod(s_after_acquire, stack, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                           may_raise_kwnames);
    }
    else {  /* _blocking.acquire_contended(self, True, -1, frame, restoring=True) */
        PyObject *func = module_global(blocking_dict, s_acquire_contended);
        if (func == NULL)
            return NULL;
        PyObject *stack[5] = {self, Py_True, minus_one, (PyObject *)frame, Py_True};
        called = PyObject_Vectorcall(func, stack, 4, restoring_kwnames);
    }
    if (called == NULL)
        return NULL;
    Py_DECREF(called);
    Py_RETURN_NONE;
}

/* RLock._acquire_restore(state): take the lock back after a Condition wait,
 * restoring (depth, owner).  In C, nothing runs between taking the raw lock
 * and storing the owner: not even a collection asked for by the raw
 * acquire's own argument tuple (3.12+ runs those as the next Python call
 * returns). */
static PyObject *
rlock_acquire_restore(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    Kind *k = &rlock_kind;
    PyObject *state = nargs == 1 ? args[0] : NULL;
    if (state == NULL || (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || !slots_ready(k, self)
        || !PyTuple_CheckExact(state) || PyTuple_GET_SIZE(state) != 2)
        return delegate(k->py_acquire_restore, self, args, nargs, kwnames);
    PyFrameObject *frame = calling_frame();
    if (frame == NULL)
        return NULL;
    PyObject *code, *offset;
    if (call_site(frame, &code, &offset) < 0)  /* code, offset = _site(frame) */
        return NULL;
    if (run_pending() < 0) {
        Py_DECREF(code);
        Py_DECREF(offset);
        return NULL;
    }
    int taken = raw_try_acquire(SLOT(self, lock));
    if (taken > 0) {  /* self._depth, self._owner = state; the site */
        set_slot(self, k->off.depth, PyTuple_GET_ITEM(state, 0));
        set_owner(k, self, PyTuple_GET_ITEM(state, 1));
        set_slot(self, k->off.acquired_code, code);
        set_slot(self, k->off.acquired_offset, offset);
    }
    Py_DECREF(code);
    Py_DECREF(offset);
    if (taken < 0)
        return NULL;
    if (!taken) {  /* _blocking.acquire_contended(self, True, -1, frame, quiet=True, restoring=True) */
        PyObject *func = module_global(blocking_dict, s_acquire_contended);
        if (func == NULL)
            return NULL;
        PyObject *stack[6] = {self, Py_True, minus_one, (PyObject *)frame, Py_True, Py_True};
        PyObject *called = PyObject_Vectorcall(func, stack, 4, restore_kwnames);
        if (called == NULL)
            return NULL;
        Py_DECREF(called);
        set_slot(self, k->off.depth, PyTuple_GET_ITEM(state, 0));
        set_owner(k, self, PyTuple_GET_ITEM(state, 1));
    }
    int ordering = hook_flag(ORDERING);
    if (ordering < 0)
        return NULL;
    if (ordering && order_acquired(self, frame, Py_False) < 0)
        return NULL;
    int observing = hook_flag(OBSERVING);
    if (observing < 0)
        return NULL;
    if (observing) {
        /* data = {"outcome": "acquired", "depth": self._depth, "levels": self._depth}
         * self._acquired_ns = _hooks.emit("rlock.acquire", self, frame, data) */
        PyObject *depth = SLOT(self, depth);
        PyObject *data = Py_BuildValue("{sssOsO}", "outcome", "acquired", "depth", depth,
                                       "levels", depth);
        if (data == NULL)
            return NULL;
        long long base;  /* less tracedsync's time meanwhile (see _hooks.spent) */
        PyObject *me = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
        int failed = me == NULL || spent_of(me, &base) < 0;
        Py_XDECREF(me);
        if (failed) {
            Py_DECREF(data);
            return NULL;
        }
        PyObject *emit = module_global(hooks_dict, s_emit);
        PyObject *stamped = NULL;
        if (emit != NULL) {
            PyObject *stack[4] = {s_rlock_acquire, self, (PyObject *)frame, data};
            stamped = PyObject_Vectorcall(emit, stack, 4, NULL);
        }
        Py_DECREF(data);
        if (stamped == NULL)
            return NULL;
        long long at = PyLong_AsLongLong(stamped);
        Py_DECREF(stamped);
        if (at == -1 && PyErr_Occurred())
            return NULL;
        PyObject *since = PyLong_FromLongLong(at - base);
        if (since == NULL)
            return NULL;
        set_slot(self, k->off.acquired_ns, since);
        Py_DECREF(since);
    }
    Py_RETURN_NONE;
}

/* ---- install ------------------------------------------------------------ */

#define FASTCALL(function) (PyCFunction)(void (*)(void))(function), METH_FASTCALL | METH_KEYWORDS

#define SIGNATURE_ACQUIRE "acquire($self, /, blocking=True, timeout=-1)\n--\n\n"
#define SIGNATURE_RELEASE "release($self, /)\n--\n\n"
#define SIGNATURE_EXIT "__exit__($self, exc_type, exc_value, traceback, /)\n--\n\n"

static PyMethodDef lock_defs[] = {
    {"acquire", FASTCALL(lock_acquire),
     SIGNATURE_ACQUIRE "Acquire the lock, as :meth:`threading.Lock.acquire`."},
    {"release", FASTCALL(lock_release),
     SIGNATURE_RELEASE "Release the lock, as :meth:`threading.Lock.release` (any thread may)."},
    {"__exit__", FASTCALL(lock_exit), SIGNATURE_EXIT},
    {"_acquire_restore", FASTCALL(lock_acquire_restore),
     "_acquire_restore($self, state, /)\n--\n\n"},
    {NULL, NULL, 0, NULL}};

static PyMethodDef rlock_defs[] = {
    {"acquire", FASTCALL(rlock_acquire),
     SIGNATURE_ACQUIRE "Acquire the lock, as :meth:`threading.RLock.acquire`."},
    {"release", FASTCALL(rlock_release),
     SIGNATURE_RELEASE "Release one level; the last release unlocks.  Only the owner may call it."},
    {"__exit__", FASTCALL(rlock_exit), SIGNATURE_EXIT},
    {"_release_save", FASTCALL(rlock_release_save), "_release_save($self, /)\n--\n\n"},
    {"_is_owned", FASTCALL(rlock_is_owned), "_is_owned($self, /)\n--\n\n"},
    {"_acquire_restore", FASTCALL(rlock_acquire_restore),
     "_acquire_restore($self, state, /)\n--\n\n"},
    {NULL, NULL, 0, NULL}};

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

/* A value of config (a new reference), or NULL and KeyError. */
static PyObject *
take(PyObject *config, const char *key)
{
    PyObject *value = PyDict_GetItemString(config, key);
    if (value == NULL) {
        PyErr_Format(PyExc_KeyError, "install() needs %s", key);
        return NULL;
    }
    return Py_NewRef(value);
}

/* The offset of the slot config[key], or -1 when optional and absent. */
static int
take_offset(PyObject *config, const char *key, int optional, Py_ssize_t *out)
{
    PyObject *value = PyDict_GetItemString(config, key);
    if (value == NULL) {
        if (optional) {
            *out = -1;
            return 0;
        }
        PyErr_Format(PyExc_KeyError, "install() needs %s", key);
        return -1;
    }
    return slot_offset(value, key, out);
}

/* The module-wide references, from the first install() call. */
static int
install_shared(PyObject *config)
{
    if (lock_globals != NULL)
        return 0;
    if ((lock_globals = take(config, "lock_globals")) == NULL
        || (hooks_dict = take(config, "hooks_globals")) == NULL
        || (lockorder_dict = take(config, "lockorder_globals")) == NULL
        || (blocking_dict = take(config, "blocking_globals")) == NULL
        || (order_thread = take(config, "order_thread")) == NULL
        || (internal_files = take(config, "internal_files")) == NULL
        || (no_timeout = take(config, "no_timeout")) == NULL
        || (raw_lock_type = take(config, "raw_lock_type")) == NULL
        || (reported_errors = take(config, "reported_errors")) == NULL)
        return -1;
    if (!PyDict_Check(lock_globals) || !PyDict_Check(hooks_dict) || !PyDict_Check(lockorder_dict)
        || !PyDict_Check(blocking_dict) || !PySet_Check(internal_files)
        || !PyType_Check(raw_lock_type)) {
        PyErr_SetString(PyExc_TypeError, "install(): unexpected configuration");
        return -1;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (hooks_watcher < 0 && (hooks_watcher = PyDict_AddWatcher(hooks_changed)) < 0)
        return -1;
    if (PyDict_Watch(hooks_watcher, hooks_dict) < 0)
        return -1;
#endif
    {
        PyTypeObject *raw = (PyTypeObject *)raw_lock_type;
        raw_layout_known = raw->tp_basicsize == sizeof(raw_lockobject)
                           && raw->tp_weaklistoffset == offsetof(raw_lockobject, in_weakreflist);
    }
    if ((debug_level = PyDict_GetItemString(hooks_dict, "DEBUG")) == NULL) {
        PyErr_SetString(PyExc_KeyError, "install(): _hooks has no DEBUG");
        return -1;
    }
    Py_INCREF(debug_level);
    if ((acquired_data = PyDict_GetItemWithError(lock_globals, s_acquired_data)) == NULL
        || (rlock_acquired_data = PyDict_GetItemWithError(lock_globals, s_rlock_acquired_data))
               == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "install(): _lock has no _ACQUIRED");
        return -1;
    }
    Py_INCREF(acquired_data);
    Py_INCREF(rlock_acquired_data);
    raw_acquire = PyObject_GetAttrString(raw_lock_type, "acquire");
    raw_release = PyObject_GetAttrString(raw_lock_type, "release");
    if (raw_acquire == NULL || raw_release == NULL)
        return -1;
    if (Py_IS_TYPE(raw_acquire, &PyMethodDescr_Type)) {
        PyMethodDef *def = ((PyMethodDescrObject *)raw_acquire)->d_method;
        int flags = def->ml_flags & ~METH_COEXIST;
        if (flags == (METH_VARARGS | METH_KEYWORDS) || flags == METH_VARARGS
            || flags == (METH_FASTCALL | METH_KEYWORDS) || flags == METH_FASTCALL) {
            if (false_tuple == NULL && (false_tuple = PyTuple_Pack(1, Py_False)) == NULL)
                return -1;
            raw_acquire_function = def->ml_meth;
            raw_acquire_flags = flags;
        }
    }
    return 0;
}

static PyObject *
install(PyObject *module, PyObject *config)
{
    if (!PyDict_Check(config)) {
        PyErr_SetString(PyExc_TypeError, "install() takes a dict");
        return NULL;
    }
    PyObject *reentrant_flag = PyDict_GetItemString(config, "reentrant");
    int reentrant = reentrant_flag != NULL && PyObject_IsTrue(reentrant_flag) == 1;
    Kind *k = reentrant ? &rlock_kind : &lock_kind;
    if (k->cls != NULL) {
        PyErr_Format(PyExc_RuntimeError, "tracedsync._speedups is installed already (%s)",
                     reentrant ? "RLock" : "Lock");
        return NULL;
    }
    if (install_shared(config) < 0)
        return NULL;
    Kind made = {.reentrant = reentrant};
    if (take_offset(config, "_lock", 0, &made.off.lock) < 0
        || take_offset(config, "_owner", 0, &made.off.owner) < 0
        || take_offset(config, "_held_list", 0, &made.off.held_list) < 0
        || take_offset(config, "_acquired_code", 0, &made.off.acquired_code) < 0
        || take_offset(config, "_acquired_offset", 0, &made.off.acquired_offset) < 0
        || take_offset(config, "_acquired_ns", 0, &made.off.acquired_ns) < 0
        || take_offset(config, "_weak_self", 0, &made.off.weak_self) < 0
        || take_offset(config, "_order_key", 0, &made.off.order_key) < 0
        || take_offset(config, "_identity", 0, &made.off.identity) < 0
        || take_offset(config, "_handoff", reentrant, &made.off.handoff) < 0
        || take_offset(config, "_depth", !reentrant, &made.off.depth) < 0)
        return NULL;
    if ((made.cls = take(config, "cls")) == NULL || !PyType_Check(made.cls)
        || (made.py_acquire = take(config, "acquire")) == NULL
        || (made.py_release = take(config, "release")) == NULL
        || (made.py_exit = take(config, "__exit__")) == NULL
        || (made.py_acquire_restore = take(config, "_acquire_restore")) == NULL
        || (reentrant && ((made.py_release_save = take(config, "_release_save")) == NULL
                          || (made.py_is_owned = take(config, "_is_owned")) == NULL))) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "install(): cls is not a class");
        Py_XDECREF(made.cls);
        Py_XDECREF(made.py_acquire);
        Py_XDECREF(made.py_release);
        Py_XDECREF(made.py_exit);
        Py_XDECREF(made.py_release_save);
        Py_XDECREF(made.py_is_owned);
        Py_XDECREF(made.py_acquire_restore);
        return NULL;
    }
    PyObject *methods = PyDict_New();
    if (methods == NULL)
        return NULL;
    for (PyMethodDef *def = reentrant ? rlock_defs : lock_defs; def->ml_name != NULL; def++) {
        PyObject *descriptor = PyDescr_NewMethod((PyTypeObject *)made.cls, def);
        if (descriptor == NULL || PyDict_SetItemString(methods, def->ml_name, descriptor) < 0) {
            Py_XDECREF(descriptor);
            Py_DECREF(methods);
            return NULL;
        }
        Py_DECREF(descriptor);
    }
    *k = made;
    return methods;
}

static PyObject *
flush_events(PyObject *module, PyObject *unused)
{
    if (tracedsync_flush_all() < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
expand_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "expand_records(list, start)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if ((start == -1 && PyErr_Occurred()) || tracedsync_expand(args[0], start < 0 ? 0 : start) < 0)
        return NULL;
    /* The length up to which no chunk is left: nothing has run since the
     * last look (a chunk appended later is past it). */
    return PyLong_FromSsize_t(PyList_GET_SIZE(args[0]));
}

static PyObject *
event_buffers(PyObject *module, PyObject *unused)
{
    return PyLong_FromSsize_t(tracedsync_buffer_count());
}

/* In _jsonlines.c. */
PyObject *tracedsync_json_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

static PyMethodDef module_methods[] = {
    {"json_lines", (PyCFunction)(void (*)(void))tracedsync_json_lines, METH_FASTCALL,
     "json_lines(records, helpers)\n--\n\n"
     "The JSON Lines of records, as bytes: what tracedsync._jsonl.record_to_json makes of "
     "each, with a newline after each (see _jsonlines.c)."},
    {"flush_events", flush_events, METH_NOARGS,
     "flush_events()\n--\n\n"
     "Hand on the records every thread's event buffer holds (see _eventbuffers.c)."},
    {"expand_records", (PyCFunction)(void (*)(void))expand_records, METH_FASTCALL,
     "expand_records(records, start)\n--\n\n"
     "Replace every chunk of kept-back records in the list records, from index start on, "
     "by the records it holds (see _eventbuffers.c); return the length of the list up to "
     "which no chunk is left."},
    {"event_buffers", event_buffers, METH_NOARGS,
     "event_buffers()\n--\n\n"
     "How many event buffers are registered (live threads' and not yet forgotten ones)."},
    {"install", install, METH_O,
     "install(config)\n--\n\n"
     "Make C method descriptors of tracedsync._lock.Lock or RLock (config['reentrant']): "
     "a dict, method name -> descriptor."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "tracedsync._speedups",
    "The hot path of tracedsync.Lock and RLock in C (see tracedsync._accel).", -1,
    module_methods};

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
    INTERN(s_run_pending, "_run_pending");
    INTERN(s_prepare_lock, "prepare_lock");
    INTERN(s_thread_state, "thread_state");
    INTERN(s_after_acquire, "_after_acquire");
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
    INTERN(s_release_active, "_release_active");
    INTERN(s_emit, "emit");
    INTERN(s_rlock_acquire, "rlock.acquire");
    INTERN(s_info_epoch, "_info_epoch");
    INTERN(s_thread_info, "thread_info");
    INTERN(s_identity, "identity");
    INTERN(s_spent, "spent");
    INTERN(s_sinks, "_sinks");
    INTERN(s_room_check_at, "_room_check_at");
    INTERN(s_check_room, "_check_room");
    INTERN(s_sink_failed, "sink_failed");
    INTERN(s_logging_debug, "_logging_debug");
    INTERN(s_render, "render");
    INTERN(s_sequence, "sequence");
    INTERN(s_release_edge, "release_edge");
    INTERN(s_acquired_data, "_ACQUIRED");
    INTERN(s_rlock_acquired_data, "_RLOCK_ACQUIRED");
    INTERN(s_lock_acquire, "lock.acquire");
    INTERN(s_lock_release, "lock.release");
    INTERN(s_rlock_release, "rlock.release");
    INTERN(s_outcome, "outcome");
    INTERN(s_held_ns, "held_ns");
    INTERN(s_depth, "depth");
    INTERN(s_error, "error");
    INTERN(s_describe_error, "describe_error");
    INTERN(s_deliver, "deliver");
    INTERN(s_charging, "_charging");
    INTERN(s_deferring, "_deferring");
    INTERN(held_key, "tracedsync._speedups.held");
    if ((minus_one = PyLong_FromLong(-1)) == NULL || (zero = PyLong_FromLong(0)) == NULL
        || (one = PyLong_FromLong(1)) == NULL
        || (whole_kwnames = Py_BuildValue("(s)", "whole")) == NULL
        || (restore_kwnames = Py_BuildValue("(ss)", "quiet", "restoring")) == NULL
        || (restoring_kwnames = Py_BuildValue("(s)", "restoring")) == NULL
        || (may_raise_kwnames = Py_BuildValue("(s)", "may_raise")) == NULL)
        return NULL;
    if (PyType_Ready(&Sequence_Type) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module != NULL && PyModule_AddObjectRef(module, "Sequence", (PyObject *)&Sequence_Type) < 0)
        Py_CLEAR(module);
    return module;
}
