/* spangap._liveness: is a call still running? Answered without the GIL.
 *
 * The sampler needs the GIL to read stacks, and behind CPU-bound threads it gets the
 * GIL late: a 25 ms call can be seen by a single sample, which cannot tell it from a
 * 2 ms call, so it is not counted. This module watches calls the sampler has already
 * seen, from a native thread that never takes the GIL, and records the last moment
 * each call was still running.
 *
 * How a call is known to be running, without touching interpreter memory that could be
 * freed under us: the watcher holds a strong reference to the call's frame object, so
 * that object stays valid. While the call runs, the frame object's f_frame points to
 * the interpreter frame on the thread's data stack. When the call returns and someone
 * (we) still holds the frame object, CPython copies the frame data into the object and
 * points f_frame at that copy (take_ownership in Python/frame.c). So
 *
 *     running  <=>  frame->f_frame != (address of frame->_f_frame_data)
 *
 * The watcher reads one pointer field of an object it owns a reference to, and compares
 * it with an address; it never dereferences interpreter frames. Generator and coroutine
 * frames are not watched (their frames outlive a suspension); the Python side filters
 * them out.
 *
 * The watcher also keeps a log of the GIL's hand-overs (_gil.h) since the sampler's last
 * tick: the state the sampler leaves it in, then a poll at each of the native thread's
 * rounds, at the sampler's look and when the sampler wakes to take the GIL back, all at
 * moments this code is awake anyway (polling more often while the sampler waits cost
 * 0.8% of a core and found nothing more, see docs/performance.md). A thread that has not
 * held the GIL since some moment has run no Python code since then, so the stack the
 * sampler reads was already its stack at that moment: frozen_since() tells each thread's
 * earliest such moment the log can prove, and a call first seen by a late tick is known
 * to have been running that much earlier.
 *
 * Times are CLOCK_MONOTONIC seconds, the clock behind time.perf_counter() on Linux.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <limits.h>

#include "_gil.h"
#include "_liveness_api.h"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030E0000
#error "spangap._liveness knows the frame layout of CPython 3.11 to 3.13 only"
#endif

/* The start of CPython's struct _frame (Include/internal/pycore_frame.h), up to the
 * inline frame data. Fields after f_trace_opcodes differ between versions. */
typedef struct {
    PyObject_HEAD
    void *f_back;
    void *f_frame;
    PyObject *f_trace;
    int f_lineno;
    char f_trace_lines;
    char f_trace_opcodes;
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *f_extra_locals;
    PyObject *f_locals_cache;
#else
    char f_fast_as_locals;
#endif
    PyObject *_f_frame_data[1];
} FrameLayout;

typedef struct {
    PyObject *frame;   /* strong reference; NULL when the slot is free */
    double last_alive; /* last time the call was seen running */
    double ended_at;   /* first time it was seen returned; 0 while running */
} Slot;

/* One reading of the GIL's state, and the time read after it: the state held at some
 * moment no later than `at`. */
typedef struct {
    double at;
    const void *holder;
    unsigned long switches;
} GilPoll;

/* Polls kept per tick; past this the oldest go (the log then proves less, never wrong). */
#define GIL_LOG_CAP 256

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock; /* guards the slots, their counts, interval and stopping */
    pthread_cond_t wake;  /* signalled by watch() (first call watched) and stop() */
    pthread_t thread;
    int running;          /* the native thread was started and not yet joined */
    int stopping;
    unsigned long fork_generation; /* fork_generation at creation: after fork() the
                                    * thread and lock belong to the parent */
    double interval;
    Slot *slots;
    Py_ssize_t capacity;
    Py_ssize_t used;      /* slots[0:used] may be in use */
    Py_ssize_t live;      /* slots in use */
    Py_ssize_t free_head; /* a free slot below used, or -1 */
    double cpu_seconds;   /* CPU time of the native thread, updated each round */
    /* Slots watched since the sampler's last sleep(): the calls its last tick saw first,
     * the only ones its look needs to check (a deep stack has thousands of others). */
    Py_ssize_t *fresh;
    Py_ssize_t fresh_len, fresh_cap;
    int fresh_overflow;   /* some were not noted: the look checks every slot */
    /* The GIL's hand-overs since the sampler released it last (guarded by `lock`). */
    void *gil;            /* NULL where the GIL's layout is not known: no log */
    GilPoll gil_log[GIL_LOG_CAP];
    int gil_log_start, gil_log_len; /* a ring */
} Watcher;

static double
monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double
thread_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
is_running(PyObject *frame)
{
    FrameLayout *f = (FrameLayout *)frame;
    void *data = __atomic_load_n(&f->f_frame, __ATOMIC_RELAXED);
    return data != (void *)f->_f_frame_data;
}

/* -- the GIL log (lock held) ----------------------------------------------------------- */

static void
gil_log_add(Watcher *w, const GilState *state, double at)
{
    int end = (w->gil_log_start + w->gil_log_len) % GIL_LOG_CAP;
    if (w->gil_log_len == GIL_LOG_CAP) {
        w->gil_log_start = (w->gil_log_start + 1) % GIL_LOG_CAP; /* the oldest goes */
    }
    else {
        w->gil_log_len++;
    }
    GilPoll *p = &w->gil_log[end];
    p->at = at;
    p->holder = state->holder;
    p->switches = state->switches;
}

/* Poll the GIL from a thread that does not hold it; nothing is logged if it could not be
 * read at this moment (someone was taking or dropping it). */
static void
poll_gil(Watcher *w)
{
    GilState state;
    if (w->gil != NULL && spangap_gil_try_read(w->gil, &state)) {
        gil_log_add(w, &state, monotonic_now()); /* after the read: held at or before */
    }
}

/* One round: note which watched calls are still running, among the slots `which[0:count]`
 * or, when `which` is NULL, among all of them. Holds only our own lock.
 * A call found running was running when the round began (it was watched before), so
 * the clock read first is a time it was alive at. A call found returned may have
 * returned after that read, so its end is stamped with a clock read after the checks:
 * ended_at is never before the return. */
static void
check_slots(Watcher *w, const Py_ssize_t *which, Py_ssize_t count)
{
    double now = monotonic_now();
    int any_ended = 0;
    Py_ssize_t n = which != NULL ? count : w->used;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t i = which != NULL ? which[k] : k;
        if (i >= w->used) {
            continue;
        }
        Slot *s = &w->slots[i];
        if (s->frame == NULL || s->ended_at != 0.0) {
            continue;
        }
        if (is_running(s->frame)) {
            s->last_alive = now;
        }
        else {
            s->ended_at = -1.0; /* stamped below */
            any_ended = 1;
        }
    }
    if (any_ended) {
        double after = monotonic_now();
        for (Py_ssize_t k = 0; k < n; k++) {
            Py_ssize_t i = which != NULL ? which[k] : k;
            if (i < w->used && w->slots[i].frame != NULL && w->slots[i].ended_at < 0.0) {
                w->slots[i].ended_at = after;
            }
        }
    }
}

/* A round of the native thread: every watched call, and the GIL (we are awake anyway). */
static void
watch_round(Watcher *w)
{
    check_slots(w, NULL, 0);
    poll_gil(w);
}

/* Note a newly watched slot for the sampler's next look (GIL and lock held). Past the
 * cap, or without memory, the look checks every slot instead. */
#define FRESH_CAP_MAX 65536
static void
note_fresh(Watcher *w, Py_ssize_t index)
{
    if (w->fresh_overflow) {
        return;
    }
    if (w->fresh_len == w->fresh_cap) {
        Py_ssize_t grown = w->fresh_cap ? w->fresh_cap * 2 : 64;
        Py_ssize_t *fresh = grown <= FRESH_CAP_MAX
                                ? PyMem_Realloc(w->fresh, (size_t)grown * sizeof(Py_ssize_t))
                                : NULL;
        if (fresh == NULL) {
            w->fresh_overflow = 1;
            return;
        }
        w->fresh = fresh;
        w->fresh_cap = grown;
    }
    w->fresh[w->fresh_len++] = index;
}

/* The sampler's look: the slots watched since its last sleep (lock held). */
static void
look_round(Watcher *w)
{
    if (w->fresh_overflow) {
        watch_round(w);
    }
    else {
        check_slots(w, w->fresh, w->fresh_len);
    }
}

static void
forget_fresh(Watcher *w)
{
    w->fresh_len = 0;
    w->fresh_overflow = 0;
}

static void *
watch_loop(void *arg)
{
    Watcher *w = (Watcher *)arg;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    pthread_mutex_lock(&w->lock);
    while (!w->stopping) {
        if (w->live == 0) {
            /* Nothing to watch: sleep until watch() or stop() signals, at no cost. */
            while (!w->stopping && w->live == 0) {
                pthread_cond_wait(&w->wake, &w->lock);
            }
            clock_gettime(CLOCK_MONOTONIC, &deadline);
            continue;
        }
        deadline.tv_nsec += (long)(w->interval * 1e9);
        while (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_nsec -= 1000000000L;
            deadline.tv_sec += 1;
        }
        int rc = 0;
        while (!w->stopping && rc != ETIMEDOUT) {
            rc = pthread_cond_timedwait(&w->wake, &w->lock, &deadline);
        }
        if (w->stopping) {
            break;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > deadline.tv_sec + 1) {
            deadline = now; /* fell far behind (the machine stalled): no burst */
        }
        watch_round(w);
        w->cpu_seconds = thread_cpu_now();
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Bumped in the child by every fork() (pthread_atfork), so that a watcher copied from
 * its parent is known as such without a getpid() system call (glibc no longer caches
 * the pid) on every call watched and ended. */
static volatile unsigned long fork_generation;

static void
after_fork_in_child(void)
{
    fork_generation++;
}

static int
forked(Watcher *w)
{
    return w->fork_generation != fork_generation;
}

/* Rounds faster than 0.5 ms would cost more than they tell; slower than 1 s, nothing. */
static int
check_interval(double interval)
{
    if (!(interval >= 0.0005 && interval <= 1.0)) {
        PyErr_SetString(PyExc_ValueError, "interval must be between 0.0005 and 1 second");
        return -1;
    }
    return 0;
}

static PyObject *
watcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"interval", NULL};
    double interval;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "d", kwlist, &interval) ||
        check_interval(interval) < 0) {
        return NULL;
    }
    Watcher *w = (Watcher *)type->tp_alloc(type, 0);
    if (w == NULL) {
        return NULL;
    }
    w->interval = interval;
    w->fork_generation = fork_generation;
    w->free_head = -1;
    w->gil = spangap_gil_of_this_interpreter();
    if (pthread_mutex_init(&w->lock, NULL) != 0 || pthread_cond_init(&w->wake, NULL) != 0) {
        Py_DECREF(w);
        PyErr_SetString(PyExc_OSError, "cannot create the watcher's lock");
        return NULL;
    }
    /* A condition variable on the monotonic clock, so that deadlines ignore wall-clock
     * steps. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_destroy(&w->wake);
    pthread_cond_init(&w->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&w->thread, NULL, watch_loop, w) != 0) {
        Py_DECREF(w);
        PyErr_SetString(PyExc_OSError, "cannot start the watcher thread");
        return NULL;
    }
    w->running = 1;
    return (PyObject *)w;
}

/* Stop and join the native thread (releasing the GIL while joining). */
static void
stop_thread(Watcher *w)
{
    if (!w->running || forked(w)) {
        w->running = 0;
        return;
    }
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(w->thread, NULL);
    Py_END_ALLOW_THREADS
    w->running = 0;
}

/* Stop watching every call. The references are dropped after unlocking: a finalizer
 * may run Python code. After fork() the lock may have been copied held: not taken. */
static void
drop_slots(Watcher *w)
{
    int locking = !forked(w);
    if (locking) {
        pthread_mutex_lock(&w->lock);
    }
    Slot *slots = w->slots;
    Py_ssize_t used = w->used;
    w->slots = NULL;
    w->capacity = w->used = w->live = 0;
    w->free_head = -1;
    forget_fresh(w);
    if (locking) {
        pthread_mutex_unlock(&w->lock);
    }
    for (Py_ssize_t i = 0; i < used; i++) {
        Py_XDECREF(slots[i].frame);
    }
    PyMem_Free(slots);
}

static void
watcher_dealloc(Watcher *w)
{
    stop_thread(w);
    drop_slots(w);
    PyMem_Free(w->fresh);
    if (!forked(w)) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
    }
    Py_TYPE(w)->tp_free((PyObject *)w);
}

/* Our lock, taken with the GIL held. The native thread never waits for the GIL while
 * holding it, so this cannot deadlock; it waits at most for one round. */
static int
lock_slots(Watcher *w)
{
    if (forked(w)) {
        PyErr_SetString(PyExc_RuntimeError, "watcher belongs to the parent process");
        return -1;
    }
    pthread_mutex_lock(&w->lock);
    return 0;
}

PyDoc_STRVAR(watch_doc,
"watch(frame, now) -> int\n\n"
"Start watching the call running in `frame` (a frame of a running, non-generator call);\n"
"`now` (a time.perf_counter() value) is when it was seen running. Returns a slot number\n"
"for ended().");

/* Start watching `frame`; returns its slot, or -1 with an exception set. */
static Py_ssize_t
watch_frame(Watcher *w, PyObject *frame, double now)
{
    if (lock_slots(w) < 0) {
        return -1;
    }
    Py_ssize_t index = w->free_head;
    if (index >= 0) {
        w->free_head = (Py_ssize_t)w->slots[index].last_alive; /* free list link */
    }
    else {
        if (w->used == w->capacity) {
            Py_ssize_t grown = w->capacity ? w->capacity * 2 : 64;
            Slot *slots = PyMem_Realloc(w->slots, (size_t)grown * sizeof(Slot));
            if (slots == NULL) {
                pthread_mutex_unlock(&w->lock);
                PyErr_NoMemory();
                return -1;
            }
            w->slots = slots;
            w->capacity = grown;
        }
        index = w->used++;
    }
    Slot *s = &w->slots[index];
    note_fresh(w, index);
    Py_INCREF(frame);
    s->frame = frame;
    s->last_alive = now;
    s->ended_at = is_running(frame) ? 0.0 : now;
    if (w->live++ == 0) {
        pthread_cond_signal(&w->wake); /* the thread sleeps while nothing is watched */
    }
    pthread_mutex_unlock(&w->lock);
    return index;
}

/* Stop watching `index`; 0 with its times, or -1 with an exception set. */
static int
end_watch(Watcher *w, Py_ssize_t index, double *last_alive, double *ended_at)
{
    if (lock_slots(w) < 0) {
        return -1;
    }
    if (index < 0 || index >= w->used || w->slots[index].frame == NULL) {
        pthread_mutex_unlock(&w->lock);
        PyErr_SetString(PyExc_KeyError, "no such watched call");
        return -1;
    }
    Slot *s = &w->slots[index];
    *last_alive = s->last_alive;
    *ended_at = s->ended_at;
    PyObject *frame = s->frame;
    s->frame = NULL;
    s->last_alive = (double)w->free_head; /* free list link */
    w->free_head = index;
    w->live--;
    pthread_mutex_unlock(&w->lock);
    Py_DECREF(frame); /* after unlocking: a finalizer may run Python code */
    return 0;
}

static PyObject *
watcher_watch(Watcher *w, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyFrame_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "watch(frame, now) expects a frame and a float");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[1]);
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t index = watch_frame(w, args[0], now);
    return index < 0 ? NULL : PyLong_FromSsize_t(index);
}

PyDoc_STRVAR(ended_doc,
"ended(slot) -> tuple[float, float]\n\n"
"Stop watching `slot` and return (last time seen running, first time seen returned);\n"
"the second is 0.0 if the watcher has not seen the call return.");

static PyObject *
watcher_ended(Watcher *w, PyObject *arg)
{
    Py_ssize_t index = PyLong_AsSsize_t(arg);
    if (index == -1 && PyErr_Occurred()) {
        return NULL;
    }
    double last_alive, ended_at;
    if (end_watch(w, index, &last_alive, &ended_at) < 0) {
        return NULL;
    }
    return Py_BuildValue("(dd)", last_alive, ended_at);
}

PyDoc_STRVAR(clear_doc, "clear()\n\nStop watching every call.");

static PyObject *
watcher_clear(Watcher *w, PyObject *Py_UNUSED(ignored))
{
    drop_slots(w);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stop_doc, "stop()\n\nStop the native thread and stop watching every call.");

static PyObject *
watcher_stop(Watcher *w, PyObject *Py_UNUSED(ignored))
{
    stop_thread(w);
    drop_slots(w);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sleep_doc,
"sleep(look_at, until)\n\n"
"Sleep until `until` with the GIL released, and on the way, if `look_at` comes first,\n"
"look once at `look_at` at the calls watched since the last sleep(), if any (both are\n"
"time.perf_counter() values). The sampler sleeps in here between ticks: a call first\n"
"seen by a tick is looked at again when, if it is still running, it has lasted long\n"
"enough to be counted, however long the interval to the next tick. On the way, it\n"
"logs who holds the GIL, for the next tick's frozen_since().");

/* Sleep on CLOCK_MONOTONIC until `when`; at once if it has passed. */
static void
sleep_until(double when)
{
    if (!(when > 0.0)) {
        return;
    }
    struct timespec ts;
    ts.tv_sec = (time_t)when;
    ts.tv_nsec = (long)((when - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static PyObject *
watcher_sleep(Watcher *w, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sleep(look_at, until) expects two floats");
        return NULL;
    }
    double look_at = PyFloat_AsDouble(args[0]);
    if (look_at == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    double until = PyFloat_AsDouble(args[1]);
    if (until == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    /* Bounded like the interval itself: a bad value must not park the sampler. */
    double latest = monotonic_now() + 1.0;
    until = until < latest ? until : latest;
    if (forked(w)) { /* after fork() the lock is not ours: sleep only */
        Py_BEGIN_ALLOW_THREADS
        sleep_until(until);
        Py_END_ALLOW_THREADS
        Py_RETURN_NONE;
    }
    /* The GIL's state as we leave it, read while we hold it: the log's first entry. */
    GilState leaving = {NULL, 0};
    if (w->gil != NULL) {
        spangap_gil_read_held(w->gil, &leaving);
    }
    double left_at = monotonic_now();
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&w->lock);
    w->gil_log_start = w->gil_log_len = 0;
    if (w->gil != NULL) {
        gil_log_add(w, &leaving, left_at);
    }
    /* Nothing new to look at: no extra wake-up, which is the look's whole cost. */
    if (look_at < until && (w->fresh_len > 0 || w->fresh_overflow)) {
        pthread_mutex_unlock(&w->lock);
        sleep_until(look_at);
        pthread_mutex_lock(&w->lock);
        look_round(w);
        poll_gil(w);
    }
    forget_fresh(w); /* the next tick's new calls are the next look's */
    pthread_mutex_unlock(&w->lock);
    sleep_until(until);
    pthread_mutex_lock(&w->lock);
    poll_gil(w); /* who holds the GIL as we start waiting for it */
    pthread_mutex_unlock(&w->lock);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(frozen_since_doc,
"frozen_since(now) -> tuple[float, dict[int, float]]\n\n"
"How long each thread's Python stack is known not to have changed before `now` (the\n"
"perf_counter() time of the tick that calls this, with the GIL held, after it read the\n"
"stacks): (since, held). Every thread has not held the GIL since `since`, except those\n"
"in `held`, which did in that stretch and have not held it since their value. The\n"
"proof comes from the hand-overs logged since the sampler's last sleep(); one that no\n"
"poll saw cuts it short. A value of `now` or later means: not known before `now`.");

/* A holder of the GIL in the log, and the time from which it is known not to hold it. */
typedef struct {
    const void *holder;
    double released_by;
} Release;

static PyObject *
watcher_frozen_since(Watcher *w, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (w->gil == NULL || forked(w)) {
        return Py_BuildValue("(d{})", now);
    }
    GilState current;
    spangap_gil_read_held(w->gil, &current);
    /* Walk the log back from the present while every hand-over was seen (the count rose
     * by at most one from a poll to the next, so each new holder is the one polled):
     * every thread that held the GIL from the chain's first poll to now is in it. */
    Release released[GIL_LOG_CAP + 1];
    int distinct = 0;
    double chain_start = now;
    pthread_mutex_lock(&w->lock);
    unsigned long later_switches = current.switches;
    released[distinct++] = (Release){current.holder, now};
    for (int i = w->gil_log_len - 1; i >= 0; i--) {
        const GilPoll *p = &w->gil_log[(w->gil_log_start + i) % GIL_LOG_CAP];
        if (p->switches > later_switches || later_switches - p->switches > 1) {
            break;
        }
        int known = 0;
        for (int d = 0; d < distinct && !known; d++) {
            known = released[d].holder == p->holder;
        }
        if (!known) { /* its newest poll: it has not held the GIL since the next one */
            released[distinct++] = (Release){p->holder, chain_start};
        }
        chain_start = p->at;
        later_switches = p->switches;
    }
    pthread_mutex_unlock(&w->lock);
    /* Holders are thread states: name them by thread id (only the few that held it). */
    PyObject *held = PyDict_New();
    if (held == NULL) {
        return NULL;
    }
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get()); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        for (int d = 0; d < distinct; d++) {
            if (released[d].holder != (const void *)ts) {
                continue;
            }
            PyObject *tid = PyLong_FromUnsignedLong(ts->thread_id);
            PyObject *at = tid != NULL ? PyFloat_FromDouble(released[d].released_by) : NULL;
            int rc = at != NULL ? PyDict_SetItem(held, tid, at) : -1;
            Py_XDECREF(tid);
            Py_XDECREF(at);
            if (rc < 0) {
                Py_DECREF(held);
                return NULL;
            }
            break;
        }
    }
    return Py_BuildValue("(dN)", chain_start, held);
}

static PyObject *
watcher_get_cpu(Watcher *w, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(w->cpu_seconds);
}

static PyObject *
watcher_get_watched(Watcher *w, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(w->live);
}

static PyObject *
watcher_get_interval(Watcher *w, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(w->interval);
}

static int
watcher_set_interval(Watcher *w, PyObject *value, void *Py_UNUSED(closure))
{
    double interval = value == NULL ? -1.0 : PyFloat_AsDouble(value);
    if ((interval == -1.0 && PyErr_Occurred()) || check_interval(interval) < 0) {
        return -1;
    }
    if (lock_slots(w) < 0) {
        return -1;
    }
    w->interval = interval;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

static PyMethodDef watcher_methods[] = {
    {"watch", (PyCFunction)(void (*)(void))watcher_watch, METH_FASTCALL, watch_doc},
    {"ended", (PyCFunction)watcher_ended, METH_O, ended_doc},
    {"clear", (PyCFunction)watcher_clear, METH_NOARGS, clear_doc},
    {"stop", (PyCFunction)watcher_stop, METH_NOARGS, stop_doc},
    {"sleep", (PyCFunction)(void (*)(void))watcher_sleep, METH_FASTCALL, sleep_doc},
    {"frozen_since", (PyCFunction)watcher_frozen_since, METH_O, frozen_since_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef watcher_getset[] = {
    {"cpu_seconds", (getter)watcher_get_cpu, NULL,
     "CPU time used by the native thread so far (as of its last round).", NULL},
    {"watched", (getter)watcher_get_watched, NULL, "How many calls are watched.", NULL},
    {"interval", (getter)watcher_get_interval, (setter)watcher_set_interval,
     "Seconds between rounds (the sampler keeps it equal to its own interval).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "spangap._liveness.Watcher",
    .tp_basicsize = sizeof(Watcher),
    .tp_dealloc = (destructor)watcher_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Watcher(interval)\n\n"
                        "A native thread that checks every `interval` seconds, without the\n"
                        "GIL, whether the watched calls are still running."),
    .tp_methods = watcher_methods,
    .tp_getset = watcher_getset,
    .tp_new = watcher_new,
};

static struct PyModuleDef liveness_module = {
    PyModuleDef_HEAD_INIT,
    "spangap._liveness",
    "Tells, without the GIL, whether calls the sampler has seen are still running.",
    -1,
    NULL,
};

/* The C API _tracking calls directly, without a Python call per watched call. */
static int
api_watch(PyObject *watcher, PyObject *frame, double now)
{
    Py_ssize_t index = watch_frame((Watcher *)watcher, frame, now);
    if (index > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many watched calls");
        return -1;
    }
    return (int)index;
}

static int
api_ended(PyObject *watcher, int slot, double *last_alive, double *ended_at)
{
    return end_watch((Watcher *)watcher, slot, last_alive, ended_at);
}

static SpangapLivenessAPI liveness_api = {&WatcherType, api_watch, api_ended};

PyMODINIT_FUNC
PyInit__liveness(void)
{
    static int registered;
    if (!registered) {
        if (pthread_atfork(NULL, NULL, after_fork_in_child) != 0) {
            PyErr_SetString(PyExc_OSError, "cannot register the watcher's fork handler");
            return NULL;
        }
        registered = 1;
    }
    if (PyType_Ready(&WatcherType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&liveness_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&WatcherType);
    if (PyModule_AddObject(module, "Watcher", (PyObject *)&WatcherType) < 0) {
        Py_DECREF(&WatcherType);
        Py_DECREF(module);
        return NULL;
    }
    PyObject *api = PyCapsule_New(&liveness_api, SPANGAP_LIVENESS_CAPSULE, NULL);
    if (api == NULL || PyModule_AddObject(module, "_C_API", api) < 0) {
        Py_XDECREF(api);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
