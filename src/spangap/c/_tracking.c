/* spangap._tracking: the call tracker's per-thread hot path, in C.
 *
 * tracker.py is the reference: this module does exactly what CallTracker.observe and
 * the methods it calls do for thread stacks (walk, end, push, taint, account, idle),
 * with the same estimates, and calls back into Python only when Python has to decide
 * or name something: the facts about a code object it has not met before (once per code
 * object), a thread's name (once per thread), where a hand-off left its span (once per
 * batch of new dark calls), and an example stack (once per CodeInfo). A completed
 * uninstrumented operation is not handed over at once: its figures go, as one tuple, to
 * a list that take() hands to Python in batches (tracker.py turns them into Operations).
 * Unchanged frames cost a pointer comparison and nothing is allocated per frame on the
 * Python heap. asyncio task stacks stay in tracker.py.
 *
 * Everything here runs with the GIL held, on the sampler thread (or in stop() under the
 * sampler's lock). Frames and code objects are held by strong references, so their
 * addresses cannot be reused while they are compared.
 *
 * Another thread's frames are read only through frame_back() and current_frames(),
 * which keep the garbage collector paused while CPython makes a frame object: see
 * "Reading other threads' frames" in docs/how-it-works.md.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

#include <stdatomic.h>

#include "_liveness_api.h"
#include "_activations_api.h"
#include "_stackwalk.h"

#if PY_VERSION_HEX < 0x030B0000
#error "spangap._tracking needs CPython 3.11 or later (PyFrame_GetLasti)"
#endif

/* Per-code flags, from the CodeInfo attributes of the same names. */
#define F_IN_SCOPE 1
#define F_COUNTABLE 2
#define F_RESUMABLE 4

/* idle.py's classes and limits.py's bounds are passed in when a tracker is made. */
typedef struct {
    unsigned char idle, work, idle_if_direct;
} IdleKinds;

typedef struct {
    Py_ssize_t code_cache; /* code objects kept (and referenced); then it starts over */
    Py_ssize_t wait_log;
    Py_ssize_t example_depth;
} Limits;

typedef struct {
    PyObject *code; /* strong; NULL = empty */
    PyObject *info; /* strong: the CodeInfo */
    unsigned char flags;
    unsigned char idle;
} CodeEntry;

typedef struct {
    PyObject *frame;     /* strong */
    PyObject *info;      /* strong */
    PyObject *lost_from; /* strong or NULL */
    double first_seen, gap_before, child_s;
    long long sample_start, nonidle_start, wait_start;
    int slot;
    unsigned char flags, idle;
    char live;  /* a countable call, dark at every sample so far */
    char cause; /* 0 no_span, 1 context_lost */
} Elem;

typedef struct {
    PyObject *key; /* strong: a CodeInfo (out-of-scope leaf) or a code object */
    int lasti;     /* -1 for a CodeInfo, else the leaf's instruction offset */
} Wait;

typedef struct {
    PyObject *name;
    PyObject *tid; /* the thread id, as observe() was given it */
    Elem *stack; /* root -> leaf */
    Py_ssize_t len, cap;
    Py_ssize_t live, inscope;
    double prev_time;
    /* During observe(): the frames running when a span was first made current since
     * the previous sample, sorted by address (borrowed from the caller's tuple), or
     * NULL. Sorted, so that a deep stack costs log(depth) per call, not depth. */
    PyObject **running;
    Py_ssize_t nrunning;
    long long samples, nonidle;
    int idle;
    int has_wait;
    Wait wait;
    Wait *waits;
    Py_ssize_t nwaits, waits_cap;
    long long wait_base;
} Track;

typedef struct {
    PyObject_HEAD
    PyObject *info_of;      /* frame -> CodeInfo */
    PyObject *thread_name;  /* tid -> str */
    PyObject *lost_context; /* tid -> mapping or None */
    PyObject *example;      /* (frames, infos) -> the example stack, see tracker.py */
    PyObject *exampled;     /* set: CodeInfos whose operations already had an example */
    PyObject *pending;      /* list: completed operations not yet taken */
    PyObject *watcher;      /* the native watcher, called through `api`, or NULL */
    const SpangapLivenessAPI *api;
    PyObject *tracks;       /* dict: tid -> capsule(Track) */
    CodeEntry *cache;
    Py_ssize_t cache_cap, cache_used;
    PyObject **running_buf; /* Track.running's storage, reused from thread to thread */
    Py_ssize_t running_cap;
    double threshold, interval, max_correction;
    double in_scope_s, spanned_s;
    Limits limits;
    IdleKinds kinds;
} Tracker;

static PyObject *str_in_scope, *str_countable, *str_resumable, *str_idle;
static PyObject *str_no_span, *str_context_lost;

/* -- reading other threads' frames ----------------------------------------------------- */

/* A frame object made for another thread's interpreter frame must be made with no
 * Python code run in the middle. On CPython 3.11 the allocation can start a collection
 * at once; its finalizers and gc.callbacks may let the GIL go, the thread returns from
 * the frame, and the new object is tied to memory the thread then reuses (a crash
 * later). The collector is paused for the one call; a paused collector runs no code, so
 * nothing else runs before it is resumed, and a collector the application disabled
 * stays disabled. */
static PyFrameObject *
frame_back(PyFrameObject *frame)
{
    int was_enabled = PyGC_Disable();
    PyFrameObject *back = PyFrame_GetBack(frame);
    if (was_enabled)
        PyGC_Enable();
    return back;
}

/* -- the code cache -------------------------------------------------------------------- */

static void
cache_clear(Tracker *self)
{
    CodeEntry *cache = self->cache;
    Py_ssize_t cap = self->cache_cap;
    self->cache = NULL;
    self->cache_cap = self->cache_used = 0;
    for (Py_ssize_t i = 0; i < cap; i++) {
        Py_XDECREF(cache[i].code);
        Py_XDECREF(cache[i].info);
    }
    PyMem_Free(cache);
}

static inline size_t
ptr_hash(const void *p)
{
    size_t h = (size_t)p >> 4;
    return h ^ (h >> 16);
}

static CodeEntry *
cache_slot(CodeEntry *cache, Py_ssize_t cap, PyObject *code)
{
    size_t mask = (size_t)cap - 1, i = ptr_hash(code) & mask;
    while (cache[i].code != NULL && cache[i].code != code)
        i = (i + 1) & mask;
    return &cache[i];
}

static int
cache_grow(Tracker *self)
{
    Py_ssize_t cap = self->cache_cap ? self->cache_cap * 2 : 1024;
    CodeEntry *fresh = PyMem_Calloc((size_t)cap, sizeof(CodeEntry));
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->cache_cap; i++)
        if (self->cache[i].code != NULL)
            *cache_slot(fresh, cap, self->cache[i].code) = self->cache[i];
    PyMem_Free(self->cache);
    self->cache = fresh;
    self->cache_cap = cap;
    return 0;
}

static int
read_flag(PyObject *info, PyObject *name, unsigned char bit, unsigned char *flags)
{
    PyObject *value = PyObject_GetAttr(info, name);
    if (value == NULL)
        return -1;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (truth < 0)
        return -1;
    if (truth)
        *flags |= bit;
    return 0;
}

/* The cached facts about the frame's code (a borrowed entry, valid until the next
 * lookup: a miss calls into Python and may grow the table). */
static CodeEntry *
code_entry(Tracker *self, PyFrameObject *frame)
{
    PyCodeObject *code = PyFrame_GetCode(frame);
    Py_DECREF(code); /* the frame keeps it alive */
    if (self->cache_cap) {
        CodeEntry *found = cache_slot(self->cache, self->cache_cap, (PyObject *)code);
        if (found->code != NULL)
            return found;
    }
    PyObject *info = PyObject_CallOneArg(self->info_of, (PyObject *)frame);
    if (info == NULL)
        return NULL;
    unsigned char flags = 0;
    PyObject *idle_obj = NULL;
    long idle = 0;
    if (read_flag(info, str_in_scope, F_IN_SCOPE, &flags) < 0
        || read_flag(info, str_countable, F_COUNTABLE, &flags) < 0
        || read_flag(info, str_resumable, F_RESUMABLE, &flags) < 0
        || (idle_obj = PyObject_GetAttr(info, str_idle)) == NULL
        || ((idle = PyLong_AsLong(idle_obj)) == -1 && PyErr_Occurred())) {
        Py_XDECREF(idle_obj);
        Py_DECREF(info);
        return NULL;
    }
    Py_DECREF(idle_obj);
    if (self->cache_used >= self->limits.code_cache)
        cache_clear(self); /* dynamically generated code: start over rather than grow */
    if ((self->cache_used + 1) * 2 > self->cache_cap && cache_grow(self) < 0) {
        Py_DECREF(info);
        return NULL;
    }
    CodeEntry *slot = cache_slot(self->cache, self->cache_cap, (PyObject *)code);
    Py_INCREF(code);
    slot->code = (PyObject *)code;
    slot->info = info; /* the reference from the call */
    slot->flags = flags;
    slot->idle = (unsigned char)idle;
    self->cache_used++;
    return slot;
}

/* -- the liveness watcher, through its C API ------------------------------------------ */

static int
watcher_watch(Tracker *self, PyObject *frame, double now, int *slot)
{
    int index = self->api->watch(self->watcher, frame, now);
    if (index < 0)
        return -1;
    *slot = index;
    return 0;
}

static int
watcher_ended(Tracker *self, int slot, double *alive, double *ended)
{
    return self->api->ended(self->watcher, slot, alive, ended);
}

/* -- tracks ---------------------------------------------------------------------------- */

static void
elem_clear(Elem *e)
{
    Py_CLEAR(e->frame);
    Py_CLEAR(e->info);
    Py_CLEAR(e->lost_from);
}

static void
wait_log_clear(Track *t)
{
    for (Py_ssize_t i = 0; i < t->nwaits; i++)
        Py_DECREF(t->waits[i].key);
    t->nwaits = 0;
}

static void
track_free(Track *t)
{
    for (Py_ssize_t i = 0; i < t->len; i++)
        elem_clear(&t->stack[i]);
    wait_log_clear(t);
    if (t->has_wait)
        Py_DECREF(t->wait.key);
    Py_XDECREF(t->name);
    Py_XDECREF(t->tid);
    PyMem_Free(t->stack);
    PyMem_Free(t->waits);
    PyMem_Free(t);
}

static void
track_capsule_destructor(PyObject *capsule)
{
    Track *t = PyCapsule_GetPointer(capsule, "spangap.track");
    if (t != NULL)
        track_free(t);
}

static Track *
track_new(PyObject *name, PyObject *tid, double now)
{
    Track *t = PyMem_Calloc(1, sizeof(Track));
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    t->name = Py_NewRef(name);
    t->tid = Py_NewRef(tid);
    t->prev_time = now;
    return t;
}

static Track *
get_track(Tracker *self, PyObject *tid, double now)
{
    PyObject *capsule = PyDict_GetItemWithError(self->tracks, tid);
    if (capsule != NULL)
        return PyCapsule_GetPointer(capsule, "spangap.track");
    if (PyErr_Occurred())
        return NULL;
    PyObject *name = PyObject_CallOneArg(self->thread_name, tid);
    if (name == NULL)
        return NULL;
    Track *t = track_new(name, tid, now);
    Py_DECREF(name);
    if (t == NULL)
        return NULL;
    capsule = PyCapsule_New(t, "spangap.track", track_capsule_destructor);
    if (capsule == NULL) {
        track_free(t);
        return NULL;
    }
    int failed = PyDict_SetItem(self->tracks, tid, capsule);
    Py_DECREF(capsule);
    return failed ? NULL : t;
}

static int
stack_reserve(Track *t, Py_ssize_t extra)
{
    if (t->len + extra <= t->cap)
        return 0;
    Py_ssize_t cap = t->cap ? t->cap : 16;
    while (cap < t->len + extra)
        cap *= 2;
    Elem *grown = PyMem_Realloc(t->stack, (size_t)cap * sizeof(Elem));
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->stack = grown;
    t->cap = cap;
    return 0;
}

static inline PyObject *
leaf_of(Track *t)
{
    return t->len ? t->stack[t->len - 1].frame : NULL;
}

static void
forget_wait(Track *t)
{
    if (t->has_wait) {
        Py_DECREF(t->wait.key);
        t->has_wait = 0;
    }
}

/* Stop following a live call: it was not dark at some moment (tracker._untrack). */
static int
untrack(Tracker *self, Track *t, Elem *e)
{
    int status = 0;
    e->live = 0;
    t->live--;
    Py_CLEAR(e->lost_from);
    if (e->slot >= 0 && self->api != NULL) {
        double alive, ended;
        if (watcher_ended(self, e->slot, &alive, &ended) < 0)
            status = -1;
    }
    e->slot = -1;
    return status;
}

/* A spanned sample: nothing on this stack can be an uninstrumented operation. */
static int
taint(Tracker *self, Track *t)
{
    int status = 0;
    for (Py_ssize_t i = 0; i < t->len; i++)
        if (t->stack[i].live && untrack(self, t, &t->stack[i]) < 0)
            status = -1;
    return status;
}

static int
compare_addresses(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(PyObject *const *)a, y = (uintptr_t)*(PyObject *const *)b;
    return (x > y) - (x < y);
}

/* Whether `frame` was running when a span was made current since the previous sample. */
static int
ran_under_activation(Track *t, PyObject *frame)
{
    return t->running != NULL
           && bsearch(&frame, t->running, (size_t)t->nrunning, sizeof(PyObject *),
                      compare_addresses) != NULL;
}

/* Point t->running at the frames of `tuple`, sorted, in the tracker's buffer. */
static int
set_running(Tracker *self, Track *t, PyObject *tuple)
{
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    if (n > self->running_cap) {
        PyObject **grown = PyMem_Realloc(self->running_buf, (size_t)n * sizeof(PyObject *));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->running_buf = grown;
        self->running_cap = n;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        self->running_buf[i] = PyTuple_GET_ITEM(tuple, i);
    qsort(self->running_buf, (size_t)n, sizeof(PyObject *), compare_addresses);
    t->running = self->running_buf;
    t->nrunning = n;
    return 0;
}

/* Point t->running at thread ``tid``'s frames in ``activated`` (observe()'s argument,
 * or NULL), or at nothing. 0, or -1 with an exception set. */
static int
take_activated(Tracker *self, Track *t, PyObject *activated, PyObject *tid)
{
    t->running = NULL;
    if (activated == NULL)
        return 0;
    PyObject *running = PyDict_GetItemWithError(activated, tid); /* borrowed */
    if (running == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_Check(running)) {
        PyErr_SetString(PyExc_TypeError, "observe() needs tuples of frames");
        return -1;
    }
    return set_running(self, t, running);
}

/* tracker._untrack_activated: a span was made current since the previous sample; the
 * calls followed then that were running at that moment were not dark throughout,
 * whether they are still running or have returned since. */
static int
untrack_activated(Tracker *self, Track *t)
{
    int status = 0;
    for (Py_ssize_t i = 0; i < t->len; i++) {
        Elem *e = &t->stack[i];
        if (e->live && ran_under_activation(t, e->frame) && untrack(self, t, e) < 0)
            status = -1;
    }
    return status;
}

/* SPEC "idle", decided by what the innermost in-scope frame called (tracker._is_idle). */
static int
is_idle(const IdleKinds *k, Track *t)
{
    Py_ssize_t i = t->len - 1;
    while (i >= 0 && !(t->stack[i].flags & F_IN_SCOPE))
        i--;
    if (i >= 0 && t->stack[i].idle == k->idle)
        return 1;
    if (i + 1 < t->len && t->stack[i + 1].idle == k->idle_if_direct)
        return 1;
    for (Py_ssize_t j = i + 1; j < t->len; j++) {
        if (t->stack[j].idle == k->idle)
            return 1;
        if (t->stack[j].idle == k->work)
            return 0;
    }
    return 0;
}

/* -- completing a call ----------------------------------------------------------------- */

/* What crosses to Python for each completed call (tracker.CallTracker._from_native). */
#define COMPLETED_CALL_FIELDS 12
static PyStructSequence_Field completed_call_fields[COMPLETED_CALL_FIELDS + 1] = {
    {"info", "the call's CodeInfo"},
    {"cause", "no_span or context_lost"},
    {"lost_from", "the span context left behind (context_lost), or None"},
    {"duration", "estimated seconds from start to end"},
    {"dark", "estimated seconds not idle, with no active span"},
    {"self_s", "dark seconds minus those of counted calls inside it"},
    {"caller", "CodeInfo of the nearest in-scope caller, or None"},
    {"thread", "the thread's name"},
    {"waits", "list of (code or CodeInfo, lasti, count): where it waited"},
    {"end_time", "when it was last seen running"},
    {"example", "root-to-leaf code locations, or None"},
    {"thread_id", "the thread's id"},
    {NULL, NULL},
};

static PyStructSequence_Desc completed_call_desc = {
    "spangap._tracking.CompletedCall",
    "A call that ended, as the C tracker passes it on.",
    completed_call_fields,
    COMPLETED_CALL_FIELDS,
};

static PyTypeObject CompletedCallType;

static PyObject *
completed_call(const Elem *call, double duration, double dark, double self_s, PyObject *caller,
               PyObject *thread, PyObject *tid, PyObject *waits, double end_time,
               PyObject *example)
{
    PyObject *record = PyStructSequence_New(&CompletedCallType);
    if (record == NULL)
        return NULL;
    PyObject *items[COMPLETED_CALL_FIELDS] = {
        Py_NewRef(call->info),
        Py_NewRef(call->cause ? str_context_lost : str_no_span),
        Py_NewRef(call->lost_from ? call->lost_from : Py_None),
        PyFloat_FromDouble(duration),
        PyFloat_FromDouble(dark),
        PyFloat_FromDouble(self_s),
        Py_NewRef(caller),
        Py_NewRef(thread),
        Py_NewRef(waits),
        PyFloat_FromDouble(end_time),
        Py_NewRef(example),
        Py_NewRef(tid),
    };
    int failed = 0;
    for (Py_ssize_t i = 0; i < COMPLETED_CALL_FIELDS; i++) {
        failed |= items[i] == NULL;
        PyStructSequence_SET_ITEM(record, i, items[i]);
    }
    if (failed) {
        Py_DECREF(record);
        return NULL;
    }
    return record;
}

/* The wait log from ``start``: a list of (key, lasti, count), distinct keys in order of
 * first appearance (Python resolves keys to names: only then can equal names merge). */
static PyObject *
wait_counts(Track *t, long long wait_start)
{
    Py_ssize_t start = (Py_ssize_t)(wait_start - t->wait_base);
    if (start < 0)
        start = 0;
    PyObject *result = PyList_New(0);
    if (result == NULL)
        return NULL;
    for (Py_ssize_t i = start; i < t->nwaits; i++) {
        Wait *w = &t->waits[i];
        Py_ssize_t seen = 0;
        for (Py_ssize_t j = start; j < i && !seen; j++)
            seen = t->waits[j].key == w->key && t->waits[j].lasti == w->lasti;
        if (seen)
            continue;
        long count = 1;
        for (Py_ssize_t j = i + 1; j < t->nwaits; j++)
            count += t->waits[j].key == w->key && t->waits[j].lasti == w->lasti;
        PyObject *item = Py_BuildValue("(Oil)", w->key, w->lasti, count);
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(item);
    }
    return result;
}

/* Frames and infos from the root to ``pos``, the last ``depth`` of them. */
static PyObject *
example_of(Track *t, Py_ssize_t pos, Py_ssize_t depth)
{
    Py_ssize_t start = pos + 1 > depth ? pos + 1 - depth : 0;
    PyObject *frames = PyTuple_New(pos + 1 - start);
    PyObject *infos = PyTuple_New(pos + 1 - start);
    if (frames == NULL || infos == NULL) {
        Py_XDECREF(frames);
        Py_XDECREF(infos);
        return NULL;
    }
    for (Py_ssize_t i = start; i <= pos; i++) {
        Py_INCREF(t->stack[i].frame);
        PyTuple_SET_ITEM(frames, i - start, t->stack[i].frame);
        Py_INCREF(t->stack[i].info);
        PyTuple_SET_ITEM(infos, i - start, t->stack[i].info);
    }
    PyObject *pair = PyTuple_Pack(2, frames, infos);
    Py_DECREF(frames);
    Py_DECREF(infos);
    return pair;
}

/* tracker._complete: the call at ``pos`` returned between the previous sample and
 * ``gone``. */
static int
complete(Tracker *self, Track *t, Py_ssize_t pos, double gone)
{
    Elem *call = &t->stack[pos];
    double last_seen = t->prev_time;
    if (call->slot >= 0 && self->api != NULL) {
        double alive, ended;
        int slot = call->slot;
        call->slot = -1;
        if (watcher_ended(self, slot, &alive, &ended) < 0)
            return -1;
        if (alive > last_seen)
            last_seen = alive;
        if (ended > 0.0 && ended < gone)
            gone = ended;
    }
    double after = gone > last_seen ? gone - last_seen : 0.0;
    double unseen = (call->gap_before + after) / 2;
    double duration = (last_seen - call->first_seen)
                      + (unseen < self->max_correction ? unseen : self->max_correction);
    long long samples = t->samples - call->sample_start;
    long long nonidle = t->nonidle - call->nonidle_start;
    Elem *parent = NULL;
    for (Py_ssize_t i = pos - 1; i >= 0 && parent == NULL; i--)
        if (t->stack[i].live)
            parent = &t->stack[i];
    if (nonidle <= 0 || samples <= 0 || duration < self->threshold) {
        if (parent != NULL)
            parent->child_s += call->child_s; /* pass counted descendants' time upward */
        return 0;
    }
    double dark = duration * (double)nonidle / (double)samples;
    double self_s = dark - call->child_s;
    if (self_s < 0.0)
        self_s = 0.0;
    if (parent != NULL)
        parent->child_s += dark;
    PyObject *caller = Py_None;
    for (Py_ssize_t i = pos - 1; i >= 0; i--)
        if (t->stack[i].flags & F_IN_SCOPE) {
            caller = t->stack[i].info;
            break;
        }
    PyObject *waits = wait_counts(t, call->wait_start);
    if (waits == NULL)
        return -1;
    PyObject *example = Py_None;
    Py_INCREF(example);
    int exampled = PySet_Contains(self->exampled, call->info);
    if (exampled == 0) {
        PyObject *pair = example_of(t, pos, self->limits.example_depth);
        Py_SETREF(example, pair ? PyObject_CallOneArg(self->example, pair) : NULL);
        Py_XDECREF(pair);
        if (PySet_GET_SIZE(self->exampled) >= self->limits.code_cache && PySet_Clear(self->exampled) < 0)
            exampled = -1; /* bounded like the code cache: an example again costs little */
        else if (example == NULL || PySet_Add(self->exampled, call->info) < 0)
            exampled = -1;
    }
    PyObject *record = NULL;
    if (exampled >= 0)
        record = completed_call(call, duration, dark, self_s, caller, t->name, t->tid, waits,
                                last_seen, example);
    Py_DECREF(waits);
    Py_XDECREF(example);
    if (record == NULL)
        return -1;
    int rc = PyList_Append(self->pending, record);
    Py_DECREF(record);
    return rc;
}

/* tracker._end_calls: calls at positions >= keep have returned since the last sample,
 * by ``gone``. The stack is left consistent even when a callback fails. */
static int
end_calls(Tracker *self, Track *t, Py_ssize_t keep, double gone)
{
    int status = 0;
    for (Py_ssize_t pos = t->len - 1; pos >= keep; pos--) {
        Elem *e = &t->stack[pos];
        if (e->live) {
            t->live--;
            if (status == 0 && complete(self, t, pos, gone) < 0)
                status = -1;
            e = &t->stack[pos];
            e->live = 0;
        }
        if (e->flags & F_IN_SCOPE)
            t->inscope--;
    }
    for (Py_ssize_t pos = keep; pos < t->len; pos++)
        elem_clear(&t->stack[pos]);
    t->len = keep < t->len ? keep : t->len;
    return status;
}

/* tracker._push: track the frames new since the last sample, running from ``since`` to
 * ``now`` at least; ``fresh`` holds them leaf first, and ``count`` of them (from the root
 * end) are pushed. */
static int
push(Tracker *self, PyObject *tid, Track *t, PyObject **fresh, Py_ssize_t count, int spanned,
     double since, double now)
{
    if (stack_reserve(t, count) < 0)
        return -1;
    double gap_before = t->samples ? since - t->prev_time : self->interval;
    PyObject *lost_from = NULL; /* looked up once, at the first new dark call */
    int looked_up = 0;
    int status = 0;
    for (Py_ssize_t k = count - 1; k >= 0; k--) {
        PyObject *frame = fresh[k];
        CodeEntry *entry = code_entry(self, (PyFrameObject *)frame);
        if (entry == NULL) {
            status = -1;
            break;
        }
        Elem *e = &t->stack[t->len];
        memset(e, 0, sizeof(Elem));
        e->slot = -1;
        e->flags = entry->flags;
        e->idle = entry->idle;
        Py_INCREF(frame);
        e->frame = frame;
        Py_INCREF(entry->info);
        e->info = entry->info;
        t->len++;
        if (e->flags & F_IN_SCOPE)
            t->inscope++;
        if (!(e->flags & F_COUNTABLE) || spanned || ran_under_activation(t, frame))
            continue;
        if (!looked_up) {
            looked_up = 1;
            lost_from = PyObject_CallOneArg(self->lost_context, tid);
            if (lost_from == NULL) {
                status = -1;
                break;
            }
            if (lost_from == Py_None)
                Py_CLEAR(lost_from);
        }
        e->live = 1;
        e->first_seen = since;
        e->gap_before = gap_before;
        e->sample_start = t->samples;
        e->nonidle_start = t->nonidle;
        e->wait_start = t->wait_base + t->nwaits;
        e->cause = lost_from != NULL;
        Py_XINCREF(lost_from);
        e->lost_from = lost_from;
        t->live++;
        if (self->api != NULL && !(e->flags & F_RESUMABLE)) {
            if (watcher_watch(self, frame, now, &e->slot) < 0) {
                status = -1;
                break;
            }
        }
    }
    Py_XDECREF(lost_from);
    return status;
}

#define SMALL_CHAIN 128

/* Where `frame` (one of the current chain) sits in the stack of the previous sample, if
 * the part of that stack from the root to it is still current: -1 if it is new. A
 * running call's callers cannot change, except a generator's (resumed by a different
 * caller): for one of those, its caller must also be the one we knew. */
static Py_ssize_t
known_position(Track *t, PyFrameObject *frame)
{
    for (Py_ssize_t p = t->len - 1; p >= 0; p--) {
        if (t->stack[p].frame != (PyObject *)frame)
            continue;
        if (p == 0 || !(t->stack[p].flags & F_RESUMABLE))
            return p;
        PyFrameObject *back = frame_back(frame);
        int same_caller = (PyObject *)back == t->stack[p - 1].frame;
        Py_XDECREF(back);
        return same_caller ? p : -1;
    }
    return -1;
}

/* Drop the references of a chain from collect_chain() and free its block, if any. */
static void
release_chain(PyObject **chain, Py_ssize_t n, PyObject **small)
{
    for (Py_ssize_t i = 0; i < n; i++)
        Py_DECREF(chain[i]);
    if (chain != small)
        PyMem_Free(chain);
}

/* The chain from `frame` (a new reference, taken over) towards the thread's root, leaf
 * first, as new references: in `small` (SMALL_CHAIN slots) or, for deeper stacks, in a
 * block that release_chain() frees. With a track, the walk stops at the first frame
 * the previous sample knew (known_position), and *keep is set to how many frames of
 * the old stack are still current; without one, it goes to the root. Returns the
 * length, or -1 with MemoryError set. */
static Py_ssize_t
collect_chain(PyFrameObject *frame, Track *t, Py_ssize_t *keep, PyObject **small,
              PyObject ***chain)
{
    PyObject **frames = small;
    Py_ssize_t n = 0, cap = SMALL_CHAIN;
    if (keep != NULL)
        *keep = 0;
    while (frame != NULL) {
        Py_ssize_t known = t != NULL ? known_position(t, frame) : -1;
        if (known >= 0) {
            *keep = known + 1;
            Py_DECREF(frame);
            break;
        }
        if (n == cap) {
            PyObject **grown = PyMem_Malloc((size_t)cap * 2 * sizeof(PyObject *));
            if (grown == NULL) {
                Py_DECREF(frame);
                release_chain(frames, n, small);
                PyErr_NoMemory();
                return -1;
            }
            memcpy(grown, frames, (size_t)n * sizeof(PyObject *));
            if (frames != small)
                PyMem_Free(frames);
            frames = grown;
            cap *= 2;
        }
        frames[n++] = (PyObject *)frame;
        frame = frame_back(frame);
    }
    *chain = frames;
    return n;
}

/* tracker._restructure: the leaf changed (at or before ``since``, when the stack was
 * already as it is ``now``); end the calls that returned, push new ones. */
static int
restructure(Tracker *self, PyObject *tid, Track *t, PyObject *leaf, int spanned, double since,
            double now)
{
    /* The new frames, leaf first, as new references: the walk stops at the first frame
     * known from the previous sample, since everything above it is known too. */
    PyObject *small[SMALL_CHAIN];
    PyObject **chain;
    Py_ssize_t keep;
    Py_INCREF(leaf);
    Py_ssize_t n = collect_chain((PyFrameObject *)leaf, t, &keep, small, &chain);
    if (n < 0)
        return -1;
    int status = 0;
    if (keep < t->len && end_calls(self, t, keep, since) < 0)
        status = -1;
    if (status == 0 && spanned && t->live && taint(self, t) < 0)
        status = -1;
    if (status == 0 && n > 0 && push(self, tid, t, chain, n, spanned, since, now) < 0)
        status = -1;
    release_chain(chain, n, small);
    forget_wait(t); /* where it waits is worked out again for the new leaf */
    t->idle = is_idle(&self->kinds, t);
    return status;
}

/* tracker._log_wait: note where this dark, non-idle sample sits. */
static int
log_wait(Track *t, Py_ssize_t limit)
{
    if (!t->has_wait) {
        Elem *top = &t->stack[t->len - 1];
        if (top->flags & F_IN_SCOPE) {
            PyCodeObject *code = PyFrame_GetCode((PyFrameObject *)top->frame);
            t->wait.key = (PyObject *)code; /* the new reference */
            t->wait.lasti = PyFrame_GetLasti((PyFrameObject *)top->frame);
        }
        else {
            Py_INCREF(top->info);
            t->wait.key = top->info;
            t->wait.lasti = -1;
        }
        t->has_wait = 1;
    }
    if (t->nwaits == t->waits_cap) {
        Py_ssize_t cap = t->waits_cap ? t->waits_cap * 2 : 64;
        Wait *grown = PyMem_Realloc(t->waits, (size_t)cap * sizeof(Wait));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->waits = grown;
        t->waits_cap = cap;
    }
    Py_INCREF(t->wait.key);
    t->waits[t->nwaits++] = t->wait;
    if (t->nwaits > limit) {
        Py_ssize_t drop = limit / 2;
        for (Py_ssize_t i = 0; i < drop; i++)
            Py_DECREF(t->waits[i].key);
        memmove(t->waits, t->waits + drop, (size_t)(t->nwaits - drop) * sizeof(Wait));
        t->nwaits -= drop;
        t->wait_base += drop;
    }
    return 0;
}

/* tracker._account: per-sample counters; 0 = no coverage, 1 = in scope and dark,
 * 2 = in scope and spanned, -1 = error. */
static int
account(Tracker *self, Track *t, int spanned, double now)
{
    t->samples++;
    t->prev_time = now;
    if (t->idle)
        return 0;
    t->nonidle++;
    if (t->live && t->len && log_wait(t, self->limits.wait_log) < 0)
        return -1;
    if (!t->inscope)
        return 0;
    return spanned ? 2 : 1;
}

/* The time since which thread ``tid``'s stack is known unchanged: its value in ``held``,
 * or else ``all``; not before its previous sample (it changed since), nor after ``now``. */
static int
frozen_time(double all, PyObject *held, PyObject *tid, double prev_time, double now,
            double *since)
{
    double at = all;
    PyObject *value = PyDict_GetItemWithError(held, tid); /* borrowed */
    if (value == NULL && PyErr_Occurred())
        return -1;
    if (value != NULL) {
        at = PyFloat_AsDouble(value);
        if (at == -1.0 && PyErr_Occurred())
            return -1;
    }
    at = at > prev_time ? at : prev_time;
    *since = at < now ? at : now;
    return 0;
}

/* -- the type -------------------------------------------------------------------------- */

PyDoc_STRVAR(observe_doc,
"observe(frames, spanned, now, alive, activated=None, frozen=None)\n\n"
"One sample of thread stacks, as CallTracker.observe: ``frames`` maps thread id to\n"
"innermost frame for the threads examined this tick, ``spanned`` holds the ids whose\n"
"context has an active span, ``alive`` every live thread id, ``activated`` maps a\n"
"thread id to the frames (a tuple) that were running when a span was first made\n"
"current in that thread since its previous sample, ``frozen`` is (since, held) from\n"
"Watcher.frozen_since: each thread's stack is known not to have changed since its\n"
"value in ``held``, or else since ``since``.");

static PyObject *
tracker_observe(Tracker *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 4 || nargs > 6) {
        PyErr_SetString(PyExc_TypeError, "observe() takes 4 to 6 arguments");
        return NULL;
    }
    PyObject *frames = args[0], *spanned = args[1], *alive = args[3];
    PyObject *activated = nargs >= 5 && args[4] != Py_None ? args[4] : NULL;
    if (activated != NULL && !PyDict_Check(activated)) {
        PyErr_SetString(PyExc_TypeError, "observe() needs a dict of running frames");
        return NULL;
    }
    PyObject *frozen = nargs == 6 && args[5] != Py_None ? args[5] : NULL;
    PyObject *held = NULL; /* with frozen_all, the two parts of ``frozen`` */
    double frozen_all = 0.0;
    if (frozen != NULL) {
        if (!PyTuple_Check(frozen) || PyTuple_GET_SIZE(frozen) != 2
            || !PyDict_Check(PyTuple_GET_ITEM(frozen, 1))) {
            PyErr_SetString(PyExc_TypeError, "observe() needs frozen as (since, held)");
            return NULL;
        }
        frozen_all = PyFloat_AsDouble(PyTuple_GET_ITEM(frozen, 0));
        if (frozen_all == -1.0 && PyErr_Occurred())
            return NULL;
        held = PyTuple_GET_ITEM(frozen, 1);
    }
    double now = PyFloat_AsDouble(args[2]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (!PyDict_Check(frames) || !PyDict_Check(alive)) {
        PyErr_SetString(PyExc_TypeError, "observe() needs dicts of frames");
        return NULL;
    }
    double interval = self->interval, cap = 2 * interval;
    double in_scope_s = 0.0, spanned_s = 0.0;
    Py_ssize_t pos = 0;
    PyObject *tid, *leaf;
    int status = 0;
    while (PyDict_Next(frames, &pos, &tid, &leaf)) {
        if (!PyFrame_Check(leaf)) {
            PyErr_SetString(PyExc_TypeError, "observe() needs frames");
            status = -1;
            break;
        }
        Track *t = get_track(self, tid, now);
        if (t == NULL) {
            status = -1;
            break;
        }
        double weight = interval;
        if (t->samples)
            weight = now - t->prev_time < cap ? now - t->prev_time : cap;
        int is_spanned = PySequence_Contains(spanned, tid);
        if (is_spanned < 0) {
            status = -1;
            break;
        }
        if (take_activated(self, t, activated, tid) < 0) {
            status = -1;
            break;
        }
        /* First, before calls that returned are completed (and perhaps counted). */
        if (t->running != NULL && t->live && untrack_activated(self, t) < 0)
            status = -1;
        if (status == 0 && leaf_of(t) != leaf) {
            double since = now;
            if (held != NULL && frozen_time(frozen_all, held, tid, t->prev_time, now, &since) < 0)
                status = -1;
            else if (restructure(self, tid, t, leaf, is_spanned, since, now) < 0)
                status = -1;
        }
        else if (status == 0 && is_spanned && t->live && taint(self, t) < 0)
            status = -1;
        t->running = NULL;
        if (status < 0)
            break;
        int coverage = account(self, t, is_spanned, now);
        if (coverage < 0) {
            status = -1;
            break;
        }
        if (coverage) {
            in_scope_s += weight;
            if (coverage > 1)
                spanned_s += weight;
        }
    }
    self->in_scope_s += in_scope_s;
    self->spanned_s += spanned_s;
    /* Threads that ended: every tick, not only when there are more tracks than live
     * threads (with a stride, live threads may have no track yet), so that the span
     * activations noted for an ended thread are applied at the tick that takes them. */
    PyObject *gone = NULL, *capsule;
    pos = 0;
    while (status == 0 && PyDict_Next(self->tracks, &pos, &tid, &capsule)) {
        int found = PyDict_Contains(alive, tid);
        if (found == 0 && gone == NULL)
            gone = PyList_New(0);
        if (found < 0 || (found == 0 && (gone == NULL || PyList_Append(gone, tid) < 0))) {
            Py_XDECREF(gone);
            return NULL;
        }
    }
    if (gone != NULL) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(gone); i++) {
            tid = PyList_GET_ITEM(gone, i);
            capsule = PyDict_GetItemWithError(self->tracks, tid);
            if (capsule == NULL)
                continue;
            Track *t = PyCapsule_GetPointer(capsule, "spangap.track");
            if (t != NULL && t->live) {
                /* the thread ended: first the calls a span was made current in */
                if (take_activated(self, t, activated, tid) < 0
                    || (t->running != NULL && untrack_activated(self, t) < 0))
                    status = -1;
                t->running = NULL;
            }
            if (t != NULL && end_calls(self, t, 0, now) < 0)
                status = -1; /* the thread ended */
            if (PyDict_DelItem(self->tracks, tid) < 0)
                status = -1;
        }
        Py_DECREF(gone);
    }
    if (status < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(take_coverage_doc,
"take_coverage() -> (in_scope_s, spanned_s)\n\nCoverage sampled since the previous call.");

static PyObject *
tracker_take_coverage(Tracker *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result = Py_BuildValue("(dd)", self->in_scope_s, self->spanned_s);
    self->in_scope_s = self->spanned_s = 0.0;
    return result;
}

PyDoc_STRVAR(clear_doc, "clear()\n\nDrop every thread's state; operations already completed stay\n"
"for take().");

static PyObject *
tracker_clear(Tracker *self, PyObject *Py_UNUSED(ignored))
{
    PyDict_Clear(self->tracks);
    self->in_scope_s = self->spanned_s = 0.0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(take_doc, "take()\n\nThe operations completed since the last take(), oldest first, as\n"
"tuples (info, cause, lost_from, duration, dark, self_s, caller, thread, waits,\n"
"end_time, example). Atomic under the GIL, so any thread may call it.");

static PyObject *
tracker_take(Tracker *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL)
        return NULL;
    PyObject *taken = self->pending;
    self->pending = fresh;
    return taken;
}

static PyObject *
tracker_get_interval(Tracker *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->interval);
}

static int
tracker_set_interval(Tracker *self, PyObject *value, void *Py_UNUSED(closure))
{
    double interval = value ? PyFloat_AsDouble(value) : -1.0;
    if (interval == -1.0 && PyErr_Occurred())
        return -1;
    if (!(interval > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "interval must be positive");
        return -1;
    }
    self->interval = interval;
    return 0;
}

static PyObject *
tracker_get_threads(Tracker *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(PyDict_GET_SIZE(self->tracks));
}

/* One positive bound from limits.Limits. */
static int
read_limit(PyObject *limits, const char *name, Py_ssize_t *out)
{
    PyObject *value = PyObject_GetAttrString(limits, name);
    if (value == NULL)
        return -1;
    *out = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    if (*out == -1 && PyErr_Occurred())
        return -1;
    if (*out < 2) {
        PyErr_Format(PyExc_ValueError, "limits.%s must be at least 2", name);
        return -1;
    }
    return 0;
}

static int
read_limits(PyObject *limits, Limits *out)
{
    return read_limit(limits, "code_cache", &out->code_cache) < 0
                   || read_limit(limits, "wait_log", &out->wait_log) < 0
                   || read_limit(limits, "example_depth", &out->example_depth) < 0
               ? -1
               : 0;
}

/* (IDLE, WORK, IDLE_IF_DIRECT) from idle.py. */
static int
read_idle_kinds(PyObject *kinds, IdleKinds *out)
{
    unsigned char values[3];
    if (!PyTuple_Check(kinds) || PyTuple_GET_SIZE(kinds) != 3) {
        PyErr_SetString(PyExc_TypeError, "idle_kinds must be (IDLE, WORK, IDLE_IF_DIRECT)");
        return -1;
    }
    for (Py_ssize_t i = 0; i < 3; i++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(kinds, i));
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v < 1 || v > 255) {
            PyErr_SetString(PyExc_ValueError, "idle kinds are small positive integers");
            return -1;
        }
        values[i] = (unsigned char)v;
    }
    out->idle = values[0];
    out->work = values[1];
    out->idle_if_direct = values[2];
    return 0;
}

static int
tracker_init(Tracker *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"info_of",        "thread_name", "lost_context", "example",
                             "threshold",      "interval",    "max_correction", "limits",
                             "idle_kinds",     "watcher",     NULL};
    PyObject *info_of, *thread_name, *lost_context, *example, *watcher = Py_None;
    PyObject *limits, *idle_kinds;
    double threshold, interval, max_correction;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOdddOO|O", kwlist, &info_of, &thread_name,
                                     &lost_context, &example, &threshold, &interval,
                                     &max_correction, &limits, &idle_kinds, &watcher))
        return -1;
    Limits bounds;
    IdleKinds kinds;
    if (read_limits(limits, &bounds) < 0 || read_idle_kinds(idle_kinds, &kinds) < 0)
        return -1;
    if (!(threshold > 0.0) || !(interval > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "threshold and interval must be positive");
        return -1;
    }
    if (!(max_correction >= 0.0) || !(max_correction < threshold / 2)) {
        PyErr_SetString(PyExc_ValueError,
                        "max_correction must be at least 0 and under half the threshold");
        return -1;
    }
    const SpangapLivenessAPI *api = NULL;
    if (watcher != Py_None) {
        api = PyCapsule_Import(SPANGAP_LIVENESS_CAPSULE, 0);
        if (api == NULL)
            return -1;
        if (!Py_IS_TYPE(watcher, api->watcher_type)) {
            PyErr_SetString(PyExc_TypeError, "watcher must be a spangap._liveness.Watcher");
            return -1;
        }
    }
    Py_INCREF(info_of);
    Py_INCREF(thread_name);
    Py_INCREF(lost_context);
    Py_INCREF(example);
    Py_XSETREF(self->info_of, info_of);
    Py_XSETREF(self->thread_name, thread_name);
    Py_XSETREF(self->lost_context, lost_context);
    Py_XSETREF(self->example, example);
    Py_XSETREF(self->watcher, api != NULL ? Py_NewRef(watcher) : NULL);
    self->api = api;
    if (self->tracks == NULL && (self->tracks = PyDict_New()) == NULL)
        return -1;
    if (self->exampled == NULL && (self->exampled = PySet_New(NULL)) == NULL)
        return -1;
    if (self->pending == NULL && (self->pending = PyList_New(0)) == NULL)
        return -1;
    self->threshold = threshold;
    self->interval = interval;
    self->max_correction = max_correction;
    self->limits = bounds;
    self->kinds = kinds;
    return 0;
}

static int
tracker_traverse(Tracker *self, visitproc visit, void *arg)
{
    Py_VISIT(self->info_of);
    Py_VISIT(self->thread_name);
    Py_VISIT(self->lost_context);
    Py_VISIT(self->example);
    Py_VISIT(self->exampled);
    Py_VISIT(self->pending);
    Py_VISIT(self->watcher);
    Py_VISIT(self->tracks);
    return 0;
}

static int
tracker_gc_clear(Tracker *self)
{
    Py_CLEAR(self->info_of);
    Py_CLEAR(self->thread_name);
    Py_CLEAR(self->lost_context);
    Py_CLEAR(self->example);
    Py_CLEAR(self->exampled);
    Py_CLEAR(self->pending);
    Py_CLEAR(self->watcher);
    self->api = NULL;
    Py_CLEAR(self->tracks);
    cache_clear(self);
    PyMem_Free(self->running_buf);
    self->running_buf = NULL;
    self->running_cap = 0;
    return 0;
}

static void
tracker_dealloc(Tracker *self)
{
    PyObject_GC_UnTrack(self);
    tracker_gc_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef tracker_methods[] = {
    {"observe", (PyCFunction)(void (*)(void))tracker_observe, METH_FASTCALL, observe_doc},
    {"take_coverage", (PyCFunction)tracker_take_coverage, METH_NOARGS, take_coverage_doc},
    {"clear", (PyCFunction)tracker_clear, METH_NOARGS, clear_doc},
    {"take", (PyCFunction)tracker_take, METH_NOARGS, take_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tracker_getset[] = {
    {"interval", (getter)tracker_get_interval, (setter)tracker_set_interval,
     "How often each thread is examined, in seconds.", NULL},
    {"threads", (getter)tracker_get_threads, NULL, "Number of threads being followed.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TrackerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "spangap._tracking.ThreadTracker",
    .tp_doc = PyDoc_STR("The call tracker's thread path in C (see tracker.py)."),
    .tp_basicsize = sizeof(Tracker),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)tracker_init,
    .tp_dealloc = (destructor)tracker_dealloc,
    .tp_traverse = (traverseproc)tracker_traverse,
    .tp_clear = (inquiry)tracker_gc_clear,
    .tp_methods = tracker_methods,
    .tp_getset = tracker_getset,
};

/* -- module functions ------------------------------------------------------------------ */

/* Activations noted since the module was loaded: each mark carries its number, so the
 * sampler can tell the marks made before it read the stacks from those made after. */
static unsigned long long activations_noted;

/* Activations per thread, for the native stack sampler (_stacks.c), which reads them
 * without the GIL: a table of (thread id, thread state, count) that only grows, written
 * under the GIL by the thread that activates. Thread ids are reused: a thread whose
 * state is not the slot's owner starts the count again (a reader that sees the old
 * owner answers 0, and sees the activation at its next look). A thread that finds no
 * free slot counts in `crowded`, which every thread's count includes: never fewer
 * activations than made. */
#define ACTIVATION_SLOTS 16384
#define ACTIVATION_PROBES 64
static struct {
    _Atomic unsigned long tid;
    _Atomic uintptr_t owner;
    _Atomic unsigned long long count;
} activation_slots[ACTIVATION_SLOTS];
static _Atomic unsigned long long activations_crowded;

static size_t
activation_slot(unsigned long tid)
{
    return (size_t)((tid >> 4) * 0x9E3779B97F4A7C15ull) & (ACTIVATION_SLOTS - 1);
}

static void
count_activation(unsigned long tid, uintptr_t owner)
{
    size_t at = activation_slot(tid);
    for (int probe = 0; probe < ACTIVATION_PROBES; probe++, at = (at + 1) & (ACTIVATION_SLOTS - 1)) {
        unsigned long held = atomic_load(&activation_slots[at].tid);
        if (held == 0) {
            atomic_store(&activation_slots[at].tid, tid); /* one writer: the GIL holder */
            held = tid;
        }
        if (held == tid) {
            if (atomic_load(&activation_slots[at].owner) != owner) {
                atomic_store(&activation_slots[at].count, 0); /* first, then the owner */
                atomic_store(&activation_slots[at].owner, owner);
            }
            atomic_fetch_add(&activation_slots[at].count, 1);
            return;
        }
    }
    atomic_fetch_add(&activations_crowded, 1);
}

/* How many spans the thread `tid`, whose state is at `owner`, has made current so far
 * (or more). */
static unsigned long long
activations_of(unsigned long tid, uintptr_t owner)
{
    unsigned long long crowded = atomic_load(&activations_crowded);
    size_t at = activation_slot(tid);
    for (int probe = 0; probe < ACTIVATION_PROBES; probe++, at = (at + 1) & (ACTIVATION_SLOTS - 1)) {
        unsigned long held = atomic_load(&activation_slots[at].tid);
        if (held == tid)
            return atomic_load(&activation_slots[at].owner) == owner
                       ? crowded + atomic_load(&activation_slots[at].count)
                       : crowded;
        if (held == 0)
            break;
    }
    return crowded;
}

PyDoc_STRVAR(activation_count_doc,
"activation_count() -> int\n\nThe number of the last activation noted (0 before any).");

static PyObject *
activation_count(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(activations_noted);
}

/* The calling thread's frames as frame objects, leaf first, from the caller of the
 * innermost Python function to the root (made where missing, once per interval: later
 * activations then stop where they meet one of them). A new tuple, or NULL. */
static PyObject *
own_stack(void)
{
    PyFrameObject *current = PyEval_GetFrame(); /* borrowed */
    PyObject *small[SMALL_CHAIN];
    PyObject **frames;
    Py_ssize_t n = collect_chain(current != NULL ? frame_back(current) : NULL, NULL, NULL, small,
                                 &frames);
    if (n < 0)
        return NULL;
    PyObject *tuple = PyTuple_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (tuple != NULL)
            PyTuple_SET_ITEM(tuple, i, frames[i]); /* steals the reference */
        else
            Py_DECREF(frames[i]);
    }
    if (frames != small)
        PyMem_Free(frames);
    return tuple;
}

/* The first mark of an interval: the whole stack, in `*first_out`, indexed by a new dict
 * in `*known_out`. A new tuple, or NULL. */
static PyObject *
first_mark(unsigned long long number, PyObject **first_out, PyObject **known_out)
{
    PyObject *stack = own_stack(), *index = stack != NULL ? PyDict_New() : NULL, *mark = NULL;
    for (Py_ssize_t i = 0; index != NULL && i < PyTuple_GET_SIZE(stack); i++) {
        PyObject *at = PyLong_FromSsize_t(i);
        if (at == NULL || PyDict_SetItem(index, PyTuple_GET_ITEM(stack, i), at) < 0)
            Py_CLEAR(index);
        Py_XDECREF(at);
    }
    if (index != NULL)
        mark = Py_BuildValue("(()y#()OnK)", "", (Py_ssize_t)0, stack, (Py_ssize_t)0, number);
    if (mark != NULL) {
        *first_out = stack;
        *known_out = index;
        return mark;
    }
    Py_XDECREF(stack);
    Py_XDECREF(index);
    return NULL;
}

/* A later mark: the frames down to the first one in `known` (the interval's first
 * stack), with no frame object made. A new tuple, or NULL. */
static PyObject *
later_mark(PyObject *known, PyObject *first, unsigned long long number)
{
    PyObject *objs = PyList_New(0), *codes = PyList_New(0), *mark = NULL;
    PyObject *objs_tuple = NULL, *codes_tuple = NULL;
    char *addrs = NULL;
    Py_ssize_t naddrs = 0, join = -1;
    if (objs != NULL && codes != NULL
        && spangap_walk_own(known, objs, &addrs, &naddrs, codes, &join) == 0) {
        objs_tuple = PyList_AsTuple(objs);
        codes_tuple = PyList_AsTuple(codes);
        if (objs_tuple != NULL && codes_tuple != NULL)
            mark = Py_BuildValue("(Oy#OOnK)", objs_tuple, addrs ? addrs : "",
                                 naddrs * (Py_ssize_t)sizeof(uintptr_t), codes_tuple, first,
                                 join, number);
    }
    PyMem_Free(addrs);
    Py_XDECREF(objs);
    Py_XDECREF(codes);
    Py_XDECREF(objs_tuple);
    Py_XDECREF(codes_tuple);
    return mark;
}

PyDoc_STRVAR(note_activation_doc,
"note_activation(threads, tasks, tid, task) -> None\n\n"
"activations.py's note of one span activation, made in one step that runs no Python\n"
"code (the collector is paused), so the sampler taking the notes never sees half of\n"
"one. threads[tid] becomes (first stack, frame -> index in it, number of the first mark,\n"
"latest mark), and, with a task, tasks[task] becomes (first mark, latest mark); see\n"
"activations.Mark. No frame object is made: frames without one are noted by address.");

static PyObject *
note_activation(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "note_activation(threads: dict, tasks: dict, tid, task)");
        return NULL;
    }
    PyObject *threads = args[0], *tasks = args[1], *tid = args[2], *task = args[3];
    int gc_was_enabled = PyGC_Disable();
    PyObject *entry = NULL, *mark = NULL, *old_thread = NULL, *old_task = NULL;
    PyObject *stack = NULL, *known = NULL, *first_number = NULL;
    unsigned long long number = ++activations_noted;
    count_activation(PyLong_AsUnsignedLong(tid), (uintptr_t)PyThreadState_Get());
    if (PyErr_Occurred())
        PyErr_Clear(); /* not a thread id: counted under 0, which no thread has */
    PyObject *found = PyDict_GetItemWithError(threads, tid); /* borrowed */
    if (found != NULL && PyTuple_Check(found) && PyTuple_GET_SIZE(found) == 4) {
        stack = PyTuple_GET_ITEM(found, 0);
        known = PyTuple_GET_ITEM(found, 1);
        first_number = PyTuple_GET_ITEM(found, 2);
        Py_INCREF(stack);
        Py_INCREF(known);
        Py_INCREF(first_number);
        mark = later_mark(known, stack, number);
    }
    else if (!PyErr_Occurred()) {
        mark = first_mark(number, &stack, &known);
        first_number = mark != NULL ? PyLong_FromUnsignedLongLong(number) : NULL;
    }
    if (mark != NULL && first_number != NULL)
        entry = PyTuple_Pack(4, stack, known, first_number, mark);
    /* The old values are kept until the end: freeing them may run Python code. */
    if (entry != NULL) {
        old_thread = PyDict_GetItemWithError(threads, tid);
        Py_XINCREF(old_thread);
        if (PyDict_SetItem(threads, tid, entry) < 0)
            Py_CLEAR(entry);
    }
    if (entry != NULL && task != Py_None) {
        PyObject *had = PyDict_GetItemWithError(tasks, task); /* borrowed */
        PyObject *first = had != NULL && PyTuple_Check(had) && PyTuple_GET_SIZE(had) == 2
                              ? PyTuple_GET_ITEM(had, 0)
                              : mark;
        PyObject *pair = PyErr_Occurred() ? NULL : PyTuple_Pack(2, first, mark);
        old_task = had;
        Py_XINCREF(old_task);
        if (pair == NULL || PyDict_SetItem(tasks, task, pair) < 0)
            Py_CLEAR(entry);
        Py_XDECREF(pair);
    }
    if (gc_was_enabled)
        PyGC_Enable();
    int failed = entry == NULL;
    Py_XDECREF(entry);
    Py_XDECREF(mark);
    Py_XDECREF(stack);
    Py_XDECREF(known);
    Py_XDECREF(first_number);
    Py_XDECREF(old_thread);
    Py_XDECREF(old_task);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(frames_at_doc,
"frames_at(addresses, codes, frames) -> tuple[FrameType, ...]\n\n"
"The frames among `frames` that run at the interpreter frame addresses packed in the\n"
"bytes `addresses`, with the matching code of `codes`: a mark's frames that had no\n"
"frame object when it was made, found again in a stack read since.");

static PyObject *
frames_at(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "frames_at(addresses: bytes, codes: tuple, frames)");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]) / (Py_ssize_t)sizeof(uintptr_t);
    if (n != PyTuple_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_ValueError, "frames_at(): one code per address");
        return NULL;
    }
    PyObject *frames = PySequence_Fast(args[2], "frames_at() needs a sequence of frames");
    if (frames == NULL)
        return NULL;
    PyObject *found = PyList_New(0);
    const char *packed = PyBytes_AS_STRING(args[0]);
    for (Py_ssize_t i = 0; found != NULL && i < PySequence_Fast_GET_SIZE(frames); i++) {
        PyObject *frame = PySequence_Fast_GET_ITEM(frames, i);
        const void *at = spangap_frame_address(frame);
        if (at == NULL)
            continue;
        PyCodeObject *code = PyFrame_GetCode((PyFrameObject *)frame);
        for (Py_ssize_t j = 0; j < n; j++) {
            uintptr_t address;
            memcpy(&address, packed + j * (Py_ssize_t)sizeof(uintptr_t), sizeof(address));
            if ((const void *)address == at && (PyObject *)code == PyTuple_GET_ITEM(args[1], j)) {
                if (PyList_Append(found, frame) < 0)
                    Py_CLEAR(found);
                break;
            }
        }
        Py_DECREF(code);
    }
    Py_DECREF(frames);
    if (found == NULL)
        return NULL;
    PyObject *result = PyList_AsTuple(found);
    Py_DECREF(found);
    return result;
}

PyDoc_STRVAR(current_frames_doc,
"current_frames() -> dict[int, FrameType]\n\n"
"sys._current_frames(), with the garbage collector paused while it runs: on CPython\n"
"3.11 a collection started there runs under the runtime's thread-list lock (a deadlock\n"
"when a finalizer waits for a thread that needs that lock, CPython gh-106883), and\n"
"finalizers may let the GIL go while a frame object is half made.");

static PyObject *
current_frames(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    int was_enabled = PyGC_Disable();
    PyObject *frames = _PyThread_CurrentFrames();
    if (was_enabled)
        PyGC_Enable();
    return frames;
}

PyDoc_STRVAR(back_doc,
"back(frame) -> FrameType | None\n\n"
"frame.f_back, made with the garbage collector paused (safe for another thread's frame).");

static PyObject *
back(PyObject *Py_UNUSED(module), PyObject *frame)
{
    if (!PyFrame_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "back() needs a frame");
        return NULL;
    }
    PyFrameObject *result = frame_back((PyFrameObject *)frame);
    if (result == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    return (PyObject *)result;
}

PyDoc_STRVAR(suspended_frame_doc,
"suspended_frame(obj) -> FrameType | None\n\n"
"The frame of a coroutine, generator or async generator of CPython's own types (its\n"
"cr_frame, gi_frame or ag_frame), made with the garbage collector paused; None for a\n"
"finished one. Raises TypeError for any other object.");

static PyObject *
suspended_frame(PyObject *Py_UNUSED(module), PyObject *obj)
{
    const char *name;
    if (PyCoro_CheckExact(obj))
        name = "cr_frame";
    else if (PyGen_CheckExact(obj))
        name = "gi_frame";
    else if (PyAsyncGen_CheckExact(obj))
        name = "ag_frame";
    else {
        PyErr_SetString(PyExc_TypeError, "suspended_frame() needs a coroutine or generator");
        return NULL;
    }
    int was_enabled = PyGC_Disable();
    PyObject *frame = PyObject_GetAttrString(obj, name); /* a C getter: runs no Python */
    if (was_enabled)
        PyGC_Enable();
    return frame;
}

static PyMethodDef module_functions[] = {
    {"note_activation", (PyCFunction)(void (*)(void))note_activation, METH_FASTCALL,
     note_activation_doc},
    {"activation_count", activation_count, METH_NOARGS, activation_count_doc},
    {"frames_at", (PyCFunction)(void (*)(void))frames_at, METH_FASTCALL, frames_at_doc},
    {"current_frames", current_frames, METH_NOARGS, current_frames_doc},
    {"back", back, METH_O, back_doc},
    {"suspended_frame", suspended_frame, METH_O, suspended_frame_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef tracking_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "spangap._tracking",
    .m_doc = "The call tracker's per-thread hot path in C; tracker.py is the reference.",
    .m_size = -1,
    .m_methods = module_functions,
};

PyMODINIT_FUNC
PyInit__tracking(void)
{
    if (PyType_Ready(&TrackerType) < 0)
        return NULL;
    str_in_scope = PyUnicode_InternFromString("in_scope");
    str_countable = PyUnicode_InternFromString("countable");
    str_resumable = PyUnicode_InternFromString("resumable");
    str_idle = PyUnicode_InternFromString("idle");
    if (!str_in_scope || !str_countable || !str_resumable || !str_idle)
        return NULL;
    /* The cause names are defined once, in operation.py. */
    PyObject *operation = PyImport_ImportModule("spangap.operation");
    if (operation == NULL)
        return NULL;
    str_no_span = PyObject_GetAttrString(operation, "NO_SPAN");
    str_context_lost = PyObject_GetAttrString(operation, "CONTEXT_LOST");
    Py_DECREF(operation);
    if (str_no_span == NULL || str_context_lost == NULL)
        return NULL;
    if (CompletedCallType.tp_name == NULL
        && PyStructSequence_InitType2(&CompletedCallType, &completed_call_desc) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&tracking_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&TrackerType);
    if (PyModule_AddObject(module, "ThreadTracker", (PyObject *)&TrackerType) < 0) {
        Py_DECREF(&TrackerType);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "CompletedCall", (PyObject *)&CompletedCallType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    /* For _stacks.c: the function that reads a thread's activation count. */
    PyObject *capsule = PyCapsule_New((void *)activations_of, SPANGAP_ACTIVATIONS_CAPSULE, NULL);
    if (capsule == NULL || PyModule_AddObject(module, "_activations_api", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
