/* Every thread's stack, read without the GIL.
 *
 * The interpreter's thread states and frames are read from CPython's own layouts (3.11,
 * 3.12 and 3.13, compiled against each version's internal headers) with copies that
 * cannot fault (_safecopy.h): a read of memory that was freed and unmapped fails with
 * EFAULT instead of faulting, so no signal handler is needed. Everything read
 * is checked before it is used (the frame's owner, that a code object's type is
 * PyCode_Type, the instruction offset against the code's size, a depth cap that also
 * ends a cycle), and the innermost frame is read again after the walk: a stack that
 * moved under the walk is dropped, never returned half old and half new.
 *
 * `Reader.walk()` reads once from the calling thread (with or without the GIL);
 * `Reader.start()` runs the same walk on a native thread that never takes the GIL, at a
 * fixed interval, and counts what it saw. Only addresses and instruction offsets are
 * read: never a value of the application's.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#define PY_SSIZE_T_CLEAN
#define Py_BUILD_CORE 1
#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030E0000
#error "spangap._stacks reads the frame layouts of CPython 3.11 to 3.13 only"
#endif
#ifdef Py_GIL_DISABLED
#error "spangap._stacks needs a build with the GIL"
#endif

#include "internal/pycore_context.h"
#include "internal/pycore_dict.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_hamt.h"
#include "internal/pycore_interp.h"

#include "_activations_api.h"
#include "_chains.h"
#include "_safecopy.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* -- the layout, per version ------------------------------------------------------------ */

#if PY_VERSION_HEX >= 0x030D0000
#define FRAME_CODE_FIELD f_executable
#define FRAME_INSTR_FIELD instr_ptr
#else
#define FRAME_CODE_FIELD f_code
#define FRAME_INSTR_FIELD prev_instr
#endif

#if PY_VERSION_HEX >= 0x030C0000
#define OWNER_MAX FRAME_OWNED_BY_CSTACK
#else
#define OWNER_MAX FRAME_OWNED_BY_FRAME_OBJECT
#endif

/* The part of an interpreter frame that is read: everything before the locals. */
#define FRAME_HEAD_SIZE offsetof(_PyInterpreterFrame, localsplus)
/* The part of a code object that is read: its header up to the bytecode. */
#define CODE_HEAD_SIZE offsetof(PyCodeObject, co_code_adaptive)

/* Compile-time checks on every field read: pointer-sized where a pointer is read, and
 * inside the part of the structure that is copied. */
#define POINTER_FIELD(type, field) \
    _Static_assert(sizeof(((type *)0)->field) == sizeof(void *), #type "." #field)
POINTER_FIELD(_PyInterpreterFrame, FRAME_CODE_FIELD);
POINTER_FIELD(_PyInterpreterFrame, previous);
POINTER_FIELD(_PyInterpreterFrame, FRAME_INSTR_FIELD);
POINTER_FIELD(PyThreadState, next);
POINTER_FIELD(PyThreadState, interp);
POINTER_FIELD(PyThreadState, context);
POINTER_FIELD(PyInterpreterState, threads.head);
_Static_assert(sizeof(((_PyInterpreterFrame *)0)->owner) == 1, "frame owner is a char");
_Static_assert(offsetof(_PyInterpreterFrame, owner) < FRAME_HEAD_SIZE, "owner in the head");
_Static_assert(sizeof(((PyCodeObject *)0)->_co_firsttraceable) == sizeof(int),
               "_co_firsttraceable is an int");
_Static_assert(offsetof(PyCodeObject, _co_firsttraceable) < CODE_HEAD_SIZE, "in the head");
_Static_assert(sizeof(_Py_CODEUNIT) == 2, "a code unit is two bytes");
#if PY_VERSION_HEX >= 0x030D0000
POINTER_FIELD(PyThreadState, current_frame);
#else
POINTER_FIELD(PyThreadState, cframe);
POINTER_FIELD(_PyCFrame, current_frame);
#endif

#define MAX_DEPTH 20000   /* deeper than any recursion limit in use; also ends a cycle */
#define MAX_THREADS 65536 /* a longer thread list is taken for a corrupt read */

/* -- reads that cannot fault ------------------------------------------------------------ */

/* Copy `size` bytes at `address` of this process into `dst`; -1 when any byte is not
 * readable (freed and unmapped, or never mapped). */
static int
read_mem(void *dst, uintptr_t address, size_t size)
{
    if (address == 0)
        return -1;
    struct iovec local = {dst, size};
    struct iovec remote = {(void *)address, size};
    return safecopy_ranges(&local, &remote, 1);
}

static int
read_pointer(uintptr_t address, uintptr_t *out)
{
    return read_mem(out, address, sizeof(*out));
}

/* -- objects known without a read ------------------------------------------------------ */

/* An object pinned by a strong reference, taken under the GIL: its address cannot be
 * reused while it is here, so a walk trusts what was read of it once. A code object
 * keeps its size and first traceable instruction; a context's mapping (an immutable
 * HAMT) keeps the span it holds. */
typedef struct {
    uintptr_t key; /* the object's address; 0: empty */
    uintptr_t span;
    int32_t units, first_traceable; /* a code object's; for a mapping, units = SPAN_* */
} Known;

typedef struct {
    Known *slots;
    Py_ssize_t cap, used; /* cap: a power of two, or 0 */
} KnownTable;

static Known *
known_slot(const KnownTable *k, uintptr_t key)
{
    size_t mask = (size_t)k->cap - 1, i = (size_t)(key >> 4) * 0x9E3779B97F4A7C15ull & mask;
    while (k->slots[i].key != 0 && k->slots[i].key != key)
        i = (i + 1) & mask;
    return &k->slots[i];
}

static const Known *
known_find(const KnownTable *k, uintptr_t key)
{
    if (k->cap == 0)
        return NULL;
    const Known *slot = known_slot(k, key);
    return slot->key == key ? slot : NULL;
}

/* Room for one more entry: 0, or -1 when memory ran out. */
static int
known_reserve(KnownTable *k)
{
    if ((k->used + 1) * 2 <= k->cap)
        return 0;
    Py_ssize_t cap = k->cap ? k->cap * 2 : 256;
    KnownTable grown = {calloc((size_t)cap, sizeof(Known)), cap, 0};
    if (grown.slots == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < k->cap; i++)
        if (k->slots[i].key != 0) {
            *known_slot(&grown, k->slots[i].key) = k->slots[i];
            grown.used++;
        }
    free(k->slots);
    *k = grown;
    return 0;
}

/* Add `key` with what is known of it; 0, or -1 when memory ran out. */
static int
known_put(KnownTable *k, uintptr_t key, uintptr_t span, int32_t units, int32_t first_traceable)
{
    if (known_reserve(k) < 0)
        return -1;
    Known *slot = known_slot(k, key);
    *slot = (Known){key, span, units, first_traceable};
    k->used++;
    return 0;
}

static void
known_clear(KnownTable *k)
{
    free(k->slots);
    memset(k, 0, sizeof(*k));
}

/* -- the span in a thread's executing context -------------------------------------------- */

enum { SPAN_NONE = 0, SPAN_FOUND = 1, SPAN_UNKNOWN = 2 };

/* hamt.c's array and collision nodes (the bitmap node is in pycore_hamt.h from 3.12; its
 * layout is the same in 3.11). A self-check against real contexts runs before use. */
typedef struct {
    PyObject_VAR_HEAD
    uint32_t b_bitmap;
    PyObject *b_array[1];
} BitmapNode;

typedef struct {
    PyObject_HEAD
    PyObject *a_array[32];
    Py_ssize_t a_count;
} ArrayNode;

typedef struct {
    PyObject_VAR_HEAD
    int32_t c_hash;
    PyObject *c_array[1];
} CollisionNode;

#if PY_VERSION_HEX >= 0x030C0000
_Static_assert(offsetof(BitmapNode, b_array) == offsetof(PyHamtNode_Bitmap, b_array),
               "bitmap node layout");
#endif
POINTER_FIELD(PyContext, ctx_vars);
POINTER_FIELD(PyHamtObject, h_root);
POINTER_FIELD(PyDictObject, ma_keys);
POINTER_FIELD(PyDictObject, ma_values);

#define MAX_HAMT_DEPTH 8 /* 32 hash bits, 5 a level: 7 levels and a collision node */
#define MAX_CONTEXT_ITEMS 64
#define MAX_COLLISION_ITEMS 64

enum { NODE_UNSEEN = 0, NODE_BITMAP, NODE_ARRAY, NODE_COLLISION, NODE_OTHER };

/* What to look for: OpenTelemetry's context variable, the key of the span in its
 * Context, and the invalid span (no span), as addresses pinned by the reader. */
typedef struct {
    uintptr_t var, key, invalid;
    int32_t hash; /* the variable's hash, folded to 32 bits as hamt.c folds it */
    int enabled;
    uintptr_t types[4]; /* type addresses met, by NODE_* kind (learned from tp_name) */
    KnownTable mappings; /* contexts' mappings pinned by pin(), with the span they hold */
} SpanLookup;

/* The kind of HAMT node whose type is at `type`, learned once from the type's name. */
static int
node_kind(SpanLookup *l, uintptr_t type)
{
    for (int kind = NODE_BITMAP; kind <= NODE_COLLISION; kind++)
        if (l->types[kind] == type)
            return kind;
    uintptr_t name_at;
    char name[24] = {0};
    if (read_pointer(type + offsetof(PyTypeObject, tp_name), &name_at) < 0
        || read_mem(name, name_at, sizeof(name) - 1) < 0)
        return NODE_OTHER;
    int kind = strcmp(name, "hamt_bitmap_node") == 0      ? NODE_BITMAP
               : strcmp(name, "hamt_array_node") == 0     ? NODE_ARRAY
               : strcmp(name, "hamt_collision_node") == 0 ? NODE_COLLISION
                                                          : NODE_OTHER;
    if (kind != NODE_OTHER)
        l->types[kind] = type;
    return kind;
}

/* The value of the variable in the HAMT at `hamt`: 1 and *value, 0 when it has none, -1
 * when a read failed or something read was not what it must be. */
static int
hamt_find(SpanLookup *l, uintptr_t hamt, uintptr_t *value)
{
    uintptr_t node;
    if (read_pointer(hamt + offsetof(PyHamtObject, h_root), &node) < 0)
        return -1;
    uint32_t hash = (uint32_t)l->hash;
    for (int level = 0, shift = 0; level < MAX_HAMT_DEPTH; level++, shift += 5) {
        if (node == 0)
            return -1;
        uintptr_t type;
        if (read_pointer(node + offsetof(PyObject, ob_type), &type) < 0)
            return -1;
        uint32_t slot = (hash >> shift) & 0x1f;
        switch (node_kind(l, type)) {
        case NODE_BITMAP: {
            uint32_t bitmap;
            if (read_mem(&bitmap, node + offsetof(BitmapNode, b_bitmap), sizeof(bitmap)) < 0)
                return -1;
            uint32_t bit = 1u << slot;
            if (!(bitmap & bit))
                return 0;
            int index = __builtin_popcount(bitmap & (bit - 1));
            uintptr_t pair[2];
            if (read_mem(pair, node + offsetof(BitmapNode, b_array) + 2 * index * sizeof(void *),
                         sizeof(pair)) < 0)
                return -1;
            if (pair[0] == 0) { /* a sub-node */
                node = pair[1];
                continue;
            }
            if (pair[0] != l->var)
                return 0; /* ContextVars compare by identity */
            *value = pair[1];
            return 1;
        }
        case NODE_ARRAY:
            if (read_pointer(node + offsetof(ArrayNode, a_array) + slot * sizeof(void *), &node)
                < 0)
                return -1;
            if (node == 0)
                return 0;
            continue;
        case NODE_COLLISION: {
            Py_ssize_t size;
            if (read_mem(&size, node + offsetof(PyVarObject, ob_size), sizeof(size)) < 0
                || size < 2 || size > 2 * MAX_COLLISION_ITEMS || size % 2)
                return -1;
            uintptr_t items[2 * MAX_COLLISION_ITEMS];
            if (read_mem(items, node + offsetof(CollisionNode, c_array),
                         (size_t)size * sizeof(void *)) < 0)
                return -1;
            for (Py_ssize_t i = 0; i < size; i += 2)
                if (items[i] == l->var) {
                    *value = items[i + 1];
                    return 1;
                }
            return 0;
        }
        default:
            return -1;
        }
    }
    return -1;
}

/* The span an OpenTelemetry Context (a dict) at `ctx` holds under the span key. */
static int
dict_find(SpanLookup *l, uintptr_t dict, uintptr_t *value)
{
    uintptr_t keys, values;
    if (read_pointer(dict + offsetof(PyDictObject, ma_keys), &keys) < 0
        || read_pointer(dict + offsetof(PyDictObject, ma_values), &values) < 0)
        return -1;
    if (values != 0)
        return -1; /* a split table: OpenTelemetry's Contexts are never one */
    char header[offsetof(PyDictKeysObject, dk_indices)];
    if (read_mem(header, keys, sizeof(header)) < 0)
        return -1;
    const PyDictKeysObject *dk = (const PyDictKeysObject *)header;
    Py_ssize_t n = dk->dk_nentries;
    if (n < 0 || n > MAX_CONTEXT_ITEMS || dk->dk_log2_index_bytes > 16)
        return -1;
    if (n == 0)
        return 0;
    uintptr_t entries = keys + offsetof(PyDictKeysObject, dk_indices)
                        + ((size_t)1 << dk->dk_log2_index_bytes);
    /* Entries are (hash, key, value) in a general table, (key, value) with str keys. */
    size_t stride, key_at, value_at;
    if (dk->dk_kind == DICT_KEYS_GENERAL) {
        stride = sizeof(PyDictKeyEntry);
        key_at = offsetof(PyDictKeyEntry, me_key);
        value_at = offsetof(PyDictKeyEntry, me_value);
    }
    else if (dk->dk_kind == DICT_KEYS_UNICODE) {
        stride = sizeof(PyDictUnicodeEntry);
        key_at = offsetof(PyDictUnicodeEntry, me_key);
        value_at = offsetof(PyDictUnicodeEntry, me_value);
    }
    else
        return -1;
    char items[MAX_CONTEXT_ITEMS * sizeof(PyDictKeyEntry)];
    if (read_mem(items, entries, (size_t)n * stride) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        uintptr_t key;
        memcpy(&key, items + (size_t)i * stride + key_at, sizeof(key));
        if (key == l->key) {
            memcpy(value, items + (size_t)i * stride + value_at, sizeof(*value));
            return *value != 0;
        }
    }
    return 0;
}

/* SPAN_NONE, SPAN_FOUND (*span) or SPAN_UNKNOWN for a context whose mapping of
 * variables is at `hamt`. A mapping pinned by pin() is answered without a read. */
static int
span_in(SpanLookup *l, uintptr_t hamt, uintptr_t *span)
{
    if (hamt == 0)
        return SPAN_NONE; /* no context entered yet: no variable set */
    const Known *k = known_find(&l->mappings, hamt);
    if (k != NULL) {
        *span = k->span;
        return k->units;
    }
    uintptr_t otel_context;
    int found = hamt_find(l, hamt, &otel_context);
    if (found <= 0)
        return found == 0 ? SPAN_NONE : SPAN_UNKNOWN;
    found = dict_find(l, otel_context, span);
    if (found <= 0)
        return found == 0 ? SPAN_NONE : SPAN_UNKNOWN;
    return *span == l->invalid ? SPAN_NONE : SPAN_FOUND;
}

/* -- one walk --------------------------------------------------------------------------- */

/* One frame of a walk: its interpreter frame's address, its code object's address, and
 * its instruction offset in bytes (as frame.f_lasti; -1 before the first instruction).
 * The same record the chains take (_chains.h). */
typedef ChainFrame Entry;

typedef struct {
    unsigned long thread_id;
    unsigned long native_id; /* the kernel's thread id: its CPU clock */
    Py_ssize_t start, depth; /* its entries in the walk's array, innermost first */
    uintptr_t span;          /* with SPAN_FOUND: the span in its executing context */
    uintptr_t mapping;       /* that context's mapping of variables */
    int span_state;
    long long cpu_ns; /* its CPU clock, read when its innermost call did not move; or -1 */
} ThreadStack;

typedef struct {
    uintptr_t frame;
    Py_ssize_t at; /* index in the previous walk's entries */
} FrameSlot;

/* One thread state of the list, as read at the start of a walk. */
typedef struct {
    uintptr_t address;
    PyThreadState copy;
    uintptr_t top;    /* its innermost frame, or 0 */
    /* 3.11/3.12: the innermost frame of the C-level call below the current one (its
     * _PyCFrame's previous), which a consistent stack passes through; 0: none known */
    uintptr_t anchor;
    char head[FRAME_HEAD_SIZE]; /* the innermost frame's head, read in the same batch */
    int have_head;
    uintptr_t mapping; /* its executing context's mapping of variables, or 0 */
    int have_mapping;
    int walked; /* WALKED_* */
#if PY_VERSION_HEX < 0x030D0000
    _PyCFrame cframe; /* its current one, as read */
#endif
} StateRead;

enum { WALKED_NOT = 0, WALKED_STACK };

typedef struct {
    Entry *entries;
    Py_ssize_t nentries, entries_cap;
    ThreadStack *threads;
    Py_ssize_t nthreads, threads_cap;
    FrameSlot *index; /* scratch: the previous stack of the thread being walked */
    Py_ssize_t index_cap;
    StateRead *states; /* the thread list as this walk read it, in list order */
    Py_ssize_t nstates, states_cap;
    struct iovec *local, *remote; /* scratch for batched reads */
    Py_ssize_t iov_cap;
} Walk;

typedef struct {
    unsigned long long walks, threads, frames, torn, invalid, unreadable, code_reads;
    unsigned long long frames_reused; /* taken from the previous walk, not read */
    Py_ssize_t max_depth;
} Counts;


enum { STACK_OK = 0, STACK_TORN = 1, STACK_INVALID = 2, STACK_UNREADABLE = 3 };

/* Grow the array at *items (of `size`-byte items, room for *cap) to hold `need`; the
 * capacity doubles from `first`. 0, or -1 when memory ran out (the array is kept). */
static int
grow(void **items, Py_ssize_t *cap, Py_ssize_t need, size_t size, Py_ssize_t first)
{
    if (need <= *cap)
        return 0;
    Py_ssize_t grown_cap = *cap ? *cap : first;
    while (grown_cap < need)
        grown_cap *= 2;
    void *grown = realloc(*items, (size_t)grown_cap * size);
    if (grown == NULL)
        return -1;
    *items = grown;
    *cap = grown_cap;
    return 0;
}

static int
walk_reserve(Walk *w, Py_ssize_t more_entries, Py_ssize_t more_threads)
{
    return grow((void **)&w->entries, &w->entries_cap, w->nentries + more_entries,
                sizeof(Entry), 256) < 0
                   || grow((void **)&w->threads, &w->threads_cap, w->nthreads + more_threads,
                           sizeof(ThreadStack), 16) < 0
               ? -1
               : 0;
}

/* Room for `n` thread states, and n + 1 ranges of a batched read. */
static int
states_reserve(Walk *w, Py_ssize_t n)
{
    Py_ssize_t local_cap = w->iov_cap, remote_cap = w->iov_cap;
    if (grow((void **)&w->states, &w->states_cap, n, sizeof(StateRead), 16) < 0
        || grow((void **)&w->local, &local_cap, n + 1, sizeof(struct iovec), 16) < 0
        || grow((void **)&w->remote, &remote_cap, n + 1, sizeof(struct iovec), 16) < 0)
        return -1;
    w->iov_cap = local_cap < remote_cap ? local_cap : remote_cap;
    return 0;
}

/* One copy for the `n` ranges set up in w->local / w->remote; 0 when every
 * byte was read. The kernel takes at most IOV_MAX ranges a call. */
static int
read_batch(Walk *w, Py_ssize_t n)
{
    Py_ssize_t done = 0;
    while (done < n) {
        Py_ssize_t part = n - done > 1024 ? 1024 : n - done;
        if (safecopy_ranges(w->local + done, w->remote + done, (unsigned long)part) < 0)
            return -1;
        done += part;
    }
    return 0;
}

static void
walk_free(Walk *w)
{
    free(w->entries);
    free(w->threads);
    free(w->index);
    free(w->states);
    free(w->local);
    free(w->remote);
    memset(w, 0, sizeof(*w));
}

/* Index the previous stack `prev` (`depth` entries) by frame address into w->index;
 * returns the mask of the table, or -1 when memory ran out. */
static Py_ssize_t
index_previous(Walk *w, const Entry *prev, Py_ssize_t depth)
{
    Py_ssize_t cap = 16;
    while (cap < depth * 2)
        cap *= 2;
    if (grow((void **)&w->index, &w->index_cap, cap, sizeof(FrameSlot), cap) < 0)
        return -1;
    memset(w->index, 0, (size_t)cap * sizeof(FrameSlot));
    size_t mask = (size_t)cap - 1;
    for (Py_ssize_t i = 0; i < depth; i++) {
        size_t h = (size_t)(prev[i].frame >> 4) * 0x9E3779B97F4A7C15ull & mask;
        while (w->index[h].frame != 0)
            h = (h + 1) & mask;
        w->index[h].frame = prev[i].frame;
        w->index[h].at = i;
    }
    return cap - 1;
}

static Py_ssize_t
index_find(const Walk *w, Py_ssize_t mask, uintptr_t frame)
{
    size_t h = (size_t)(frame >> 4) * 0x9E3779B97F4A7C15ull & (size_t)mask;
    while (w->index[h].frame != 0) {
        if (w->index[h].frame == frame)
            return w->index[h].at;
        h = (h + 1) & (size_t)mask;
    }
    return -1;
}

/* Read the innermost frame pointer of the thread state at `ts_address` again. */
static int
reread_current_frame(uintptr_t ts_address, uintptr_t *frame)
{
#if PY_VERSION_HEX >= 0x030D0000
    return read_pointer(ts_address + offsetof(PyThreadState, current_frame), frame);
#else
    uintptr_t cframe;
    if (read_pointer(ts_address + offsetof(PyThreadState, cframe), &cframe) < 0)
        return -1;
    if (cframe == 0) {
        *frame = 0;
        return 0;
    }
    return read_pointer(cframe + offsetof(_PyCFrame, current_frame), frame);
#endif
}

/* Append the frames from `frame` to the root to `w`, checked, innermost first. With the
 * thread's stack of the previous walk (`prev`, `prev_depth` entries, innermost first),
 * the walk ends at the first frame found in it with the same code: that call is still
 * running, so every frame below it is too, at the same instruction (a caller waits in
 * its call), and those entries are taken from `prev` instead of read again. */
/* Callers' frames lie just below their callee's on the thread's data stack: one read of
 * this many bytes ending at a frame's head usually holds its callers' heads too. */
#define FRAME_WINDOW 2048

typedef struct {
    uintptr_t start; /* the address of bytes[0]; 0: empty */
    char bytes[FRAME_WINDOW];
} FrameWindow;

/* The head of the frame at `frame` into `head`: from the window when it holds it, else
 * read with the bytes below it into the window (or alone, when those are not mapped). */
static int
read_head(FrameWindow *win, uintptr_t frame, char *head)
{
    if (win->start != 0 && frame >= win->start
        && frame + FRAME_HEAD_SIZE <= win->start + FRAME_WINDOW) {
        memcpy(head, win->bytes + (frame - win->start), FRAME_HEAD_SIZE);
        return 0;
    }
    uintptr_t start = frame + FRAME_HEAD_SIZE - FRAME_WINDOW;
    if (frame + FRAME_HEAD_SIZE > FRAME_WINDOW && read_mem(win->bytes, start, FRAME_WINDOW) == 0) {
        win->start = start;
        memcpy(head, win->bytes + (frame - start), FRAME_HEAD_SIZE);
        return 0;
    }
    win->start = 0;
    return read_mem(head, frame, FRAME_HEAD_SIZE);
}

static int
walk_frames(Walk *w, uintptr_t frame, const char *first_head, const KnownTable *known,
            const Entry *prev, Py_ssize_t prev_depth, Counts *counts, Py_ssize_t *depth_out)
{
    char head[FRAME_HEAD_SIZE];
    char code_head[CODE_HEAD_SIZE];
    FrameWindow window;
    window.start = 0;
    Py_ssize_t depth = 0;
    Py_ssize_t mask = -1;
    if (prev != NULL && prev_depth > 0 && (mask = index_previous(w, prev, prev_depth)) < 0)
        return -1;
    for (; frame != 0; depth++) {
        if (depth >= MAX_DEPTH)
            return STACK_INVALID; /* a cycle, or a stack no interpreter allows */
        if (first_head != NULL) {
            memcpy(head, first_head, FRAME_HEAD_SIZE); /* read with the thread states */
            first_head = NULL;
        }
        else if (read_head(&window, frame, head) < 0)
            return STACK_UNREADABLE;
        const _PyInterpreterFrame *f = (const _PyInterpreterFrame *)head;
        uintptr_t previous = (uintptr_t)f->previous;
        if (previous == frame)
            return STACK_INVALID;
        int owner = f->owner;
        if (owner < 0 || owner > OWNER_MAX)
            return STACK_INVALID;
#if PY_VERSION_HEX >= 0x030C0000
        if (owner == FRAME_OWNED_BY_CSTACK) {
            frame = previous; /* the shim of a call from C: not a Python function */
            depth--;
            continue;
        }
#endif
        uintptr_t code = (uintptr_t)f->FRAME_CODE_FIELD;
        Py_ssize_t units, first_traceable;
        const Known *k = known_find(known, code);
        if (k != NULL) {
            units = k->units;
            first_traceable = k->first_traceable;
        }
        else {
            if (read_mem(code_head, code, CODE_HEAD_SIZE) < 0)
                return STACK_UNREADABLE;
            counts->code_reads++;
            const PyCodeObject *co = (const PyCodeObject *)code_head;
            if (Py_TYPE(co) != &PyCode_Type)
                return STACK_INVALID; /* 3.13: f_executable may be None for a shim too */
            units = Py_SIZE(co);
            first_traceable = co->_co_firsttraceable;
        }
        uintptr_t first = code + CODE_HEAD_SIZE;
        uintptr_t instr = (uintptr_t)f->FRAME_INSTR_FIELD;
        if (units <= 0 || first_traceable < 0 || first_traceable > units)
            return STACK_INVALID;
        /* A frame whose call has not started yet is skipped (as PyFrame_GetBack does). */
        if (owner != FRAME_OWNED_BY_GENERATOR
            && instr < first + (uintptr_t)first_traceable * sizeof(_Py_CODEUNIT)) {
            frame = previous;
            depth--;
            continue;
        }
        if (instr + sizeof(_Py_CODEUNIT) < first || instr >= first + (uintptr_t)units * 2
            || (instr - first) % sizeof(_Py_CODEUNIT) != 0)
            return STACK_INVALID;
        Py_ssize_t lasti_units = instr < first ? -1 : (Py_ssize_t)((instr - first) / 2);
        if (walk_reserve(w, 1, 0) < 0)
            return -1;
        Entry *e = &w->entries[w->nentries++];
        e->frame = frame;
        e->code = code;
        e->lasti = lasti_units < 0 ? -1 : (int32_t)(lasti_units * 2);
        counts->frames++;
        Py_ssize_t at = mask >= 0 ? index_find(w, mask, frame) : -1;
        if (at >= 0 && prev[at].code == code && at + 1 < prev_depth
            && prev[at + 1].frame == previous) {
            Py_ssize_t rest = prev_depth - at - 1; /* its callers, as last read */
            if (depth + 1 + rest > MAX_DEPTH)
                return STACK_INVALID;
            if (walk_reserve(w, rest, 0) < 0)
                return -1;
            memcpy(&w->entries[w->nentries], &prev[at + 1], (size_t)rest * sizeof(Entry));
            w->nentries += rest;
            counts->frames += (unsigned long long)rest;
            counts->frames_reused += (unsigned long long)rest;
            depth += 1 + rest;
            break;
        }
        frame = previous;
    }
    *depth_out = depth;
    return STACK_OK;
}

/* Whether the frames the walk appended from `start` on include the one at `frame`. */
static int
passes_through(const Walk *w, Py_ssize_t start, uintptr_t frame)
{
    for (Py_ssize_t i = start; i < w->nentries; i++)
        if (w->entries[i].frame == frame)
            return 1;
    return 0;
}

/* The stack of `tid` in `prev` (found at position `hint` when the list kept its order). */
static const ThreadStack *
previous_stack(const Walk *prev, unsigned long tid, Py_ssize_t hint)
{
    if (prev == NULL)
        return NULL;
    if (hint < prev->nthreads && prev->threads[hint].thread_id == tid)
        return &prev->threads[hint];
    for (Py_ssize_t i = 0; i < prev->nthreads; i++)
        if (prev->threads[i].thread_id == tid)
            return &prev->threads[i];
    return NULL;
}

/* The thread list of `interp`, with each state copied, into w->states, read link by
 * link. 0, or 1 when the list changed under the read (the walk is then skipped). */
static int
read_states_one_by_one(Walk *w, uintptr_t interp)
{
    uintptr_t address;
    w->nstates = 0;
    if (read_pointer(interp + offsetof(PyInterpreterState, threads.head), &address) < 0)
        return 1;
    while (address != 0) {
        if (w->nstates >= MAX_THREADS)
            return 1;
        if (states_reserve(w, w->nstates + 1) < 0)
            return -1;
        StateRead *st = &w->states[w->nstates];
        if (read_mem(&st->copy, address, sizeof(st->copy)) < 0
            || (uintptr_t)st->copy.interp != interp)
            return 1;
        st->address = address;
        w->nstates++;
        address = (uintptr_t)st->copy.next;
    }
    return 0;
}

/* The same in one read, at the addresses the previous walk found: 0 when the list still
 * links them in the same order, 1 when it does not (then it is read link by link). */
static int
read_states_batched(Walk *w, const Walk *prev, uintptr_t interp)
{
    Py_ssize_t n = prev->nstates;
    if (n == 0 || states_reserve(w, n) < 0)
        return 1;
    uintptr_t head = 0;
    w->local[0] = (struct iovec){&head, sizeof(head)};
    w->remote[0] =
        (struct iovec){(void *)(interp + offsetof(PyInterpreterState, threads.head)), 8};
    for (Py_ssize_t i = 0; i < n; i++) {
        w->states[i].address = prev->states[i].address;
        w->local[i + 1] = (struct iovec){&w->states[i].copy, sizeof(PyThreadState)};
        w->remote[i + 1] = (struct iovec){(void *)prev->states[i].address, sizeof(PyThreadState)};
    }
    if (read_batch(w, n + 1) < 0 || head != w->states[0].address)
        return 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        uintptr_t next = (uintptr_t)w->states[i].copy.next;
        uintptr_t expected = i + 1 < n ? w->states[i + 1].address : 0;
        if (next != expected || (uintptr_t)w->states[i].copy.interp != interp)
            return 1;
    }
    w->nstates = n;
    return 0;
}

/* Every state's innermost frame and that frame's head, in one or two batched reads;
 * with `mappings`, its executing context's mapping of variables in one more. */
static void
read_tops(Walk *w, int mappings)
{
    Py_ssize_t n = 0;
#if PY_VERSION_HEX >= 0x030D0000
    for (Py_ssize_t i = 0; i < w->nstates; i++) {
        w->states[i].top = (uintptr_t)w->states[i].copy.current_frame;
        w->states[i].anchor = 0; /* 3.13 sets current_frame in one step: always whole */
    }
#else
    /* Each thread's current _PyCFrame: its innermost frame, and the previous C-level
     * call's. CPython sets tstate->cframe before the new cframe's current_frame, so a
     * read in between finds whatever the C stack held: a stack that does not pass
     * through the previous level's innermost frame is not the thread's. */
    for (Py_ssize_t i = 0; i < w->nstates; i++) {
        StateRead *st = &w->states[i];
        st->top = st->anchor = 0;
        memset(&st->cframe, 0, sizeof(st->cframe));
        uintptr_t cframe = (uintptr_t)st->copy.cframe;
        if (cframe == 0)
            continue;
        w->local[n] = (struct iovec){&st->cframe, sizeof(st->cframe)};
        w->remote[n] = (struct iovec){(void *)cframe, sizeof(st->cframe)};
        n++;
    }
    if (n > 0 && read_batch(w, n) < 0) {
        /* one range failed: read them one at a time, so the others still count */
        for (Py_ssize_t i = 0; i < n; i++)
            if (read_mem(w->local[i].iov_base, (uintptr_t)w->remote[i].iov_base,
                         sizeof(_PyCFrame)) < 0)
                memset(w->local[i].iov_base, 0, sizeof(_PyCFrame));
    }
    n = 0;
    for (Py_ssize_t i = 0; i < w->nstates; i++) {
        StateRead *st = &w->states[i];
        st->top = (uintptr_t)st->cframe.current_frame;
        if (st->top == 0 || st->cframe.previous == NULL)
            continue;
        w->local[n] = (struct iovec){&st->anchor, sizeof(st->anchor)};
        w->remote[n] = (struct iovec){
            (void *)((uintptr_t)st->cframe.previous + offsetof(_PyCFrame, current_frame)), 8};
        n++;
    }
    if (n > 0 && read_batch(w, n) < 0) {
        for (Py_ssize_t i = 0; i < w->nstates; i++) {
            StateRead *st = &w->states[i];
            st->anchor = 0;
            if (st->cframe.previous != NULL)
                st->top = 0; /* not known consistent: not read this time */
        }
    }
#endif
    n = 0;
    for (Py_ssize_t i = 0; i < w->nstates; i++) {
        StateRead *st = &w->states[i];
        st->have_head = 0;
        if (st->top == 0)
            continue;
        w->local[n] = (struct iovec){st->head, FRAME_HEAD_SIZE};
        w->remote[n] = (struct iovec){(void *)st->top, FRAME_HEAD_SIZE};
        n++;
    }
    if (n > 0 && read_batch(w, n) == 0) {
        for (Py_ssize_t i = 0; i < w->nstates; i++)
            w->states[i].have_head = w->states[i].top != 0;
    }
    n = 0;
    for (Py_ssize_t i = 0; i < w->nstates; i++) {
        StateRead *st = &w->states[i];
        st->mapping = 0;
        st->have_mapping = st->copy.context == NULL; /* none entered: no mapping */
        if (!mappings || st->copy.context == NULL)
            continue;
        w->local[n] = (struct iovec){&st->mapping, sizeof(st->mapping)};
        w->remote[n] =
            (struct iovec){(char *)st->copy.context + offsetof(PyContext, ctx_vars), 8};
        n++;
    }
    if (n > 0 && read_batch(w, n) == 0) {
        for (Py_ssize_t i = 0; i < w->nstates; i++)
            w->states[i].have_mapping = 1;
    }
}

/* A thread's CPU clock in nanoseconds, by its kernel id; -1 when it cannot be read. */
static long long
thread_cpu_ns(unsigned long native_id)
{
    if (native_id == 0)
        return -1;
    clockid_t clock = (clockid_t)((~(unsigned long)native_id) << 3) | 6; /* per thread, sched */
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0)
        return -1;
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One walk of every thread of `interp`, skipping `skip_tid` (the walking thread itself
 * when it is the native one). The thread states, their innermost frames and those
 * frames' heads are read in one batch each, at the addresses of the previous walk
 * (`prev`, or NULL); a thread whose innermost call is the one it ran at the previous
 * walk costs nothing more. Returns 0, or -1 when memory ran out. */
static int
walk_all(Walk *w, const Walk *prev, uintptr_t interp, unsigned long skip_tid,
         const KnownTable *known, SpanLookup *spans, Counts *counts)
{
    w->nentries = 0;
    w->nthreads = 0;
    counts->walks++;
    int status = prev != NULL ? read_states_batched(w, prev, interp) : 1;
    if (status == 1)
        status = read_states_one_by_one(w, interp);
    if (status < 0)
        return -1;
    if (status == 1) {
        w->nstates = 0;
        counts->invalid++; /* the list changed under the read: every thread next time */
        return 0;
    }
    read_tops(w, spans != NULL && spans->enabled);
    for (Py_ssize_t n = 0; n < w->nstates; n++) {
        StateRead *st = &w->states[n];
        st->walked = WALKED_NOT;
        if (st->copy.thread_id == skip_tid)
            continue;
        if (st->top == 0)
            continue; /* no frame to read (or one not yet set: see read_tops) */
        if (walk_reserve(w, 0, 1) < 0)
            return -1;
        Py_ssize_t start = w->nentries, depth = 0;
        const ThreadStack *before = previous_stack(prev, st->copy.thread_id, w->nthreads);
        unsigned long long read_before = counts->frames - counts->frames_reused;
        int walked = walk_frames(w, st->top, st->have_head ? st->head : NULL, known,
                                 before ? &prev->entries[before->start] : NULL,
                                 before ? before->depth : 0, counts, &depth);
        if (walked < 0)
            return -1;
        /* When frames beyond the innermost were read, the innermost must still be the
         * same, or the stack moved under the walk. */
        int read_more = counts->frames - counts->frames_reused - read_before > 1
                        || !st->have_head;
        if (walked == STACK_OK && st->anchor != 0 && !passes_through(w, start, st->anchor))
            walked = STACK_INVALID; /* read while CPython was setting up a call level */
        uintptr_t again = 0;
        if (walked == STACK_OK && read_more
            && (reread_current_frame(st->address, &again) < 0 || again != st->top))
            walked = STACK_TORN; /* it moved under the walk: dropped, not half old */
        if (walked != STACK_OK) {
            w->nentries = start;
            if (walked == STACK_TORN)
                counts->torn++;
            else if (walked == STACK_INVALID)
                counts->invalid++;
            else
                counts->unreadable++;
            continue;
        }
        ThreadStack *t = &w->threads[w->nthreads++];
        st->walked = WALKED_STACK;
        t->thread_id = st->copy.thread_id;
        t->native_id = st->copy.native_thread_id;
        t->start = start;
        t->depth = w->nentries - start;
        t->span = 0;
        t->mapping = st->mapping;
        t->cpu_ns = -1;
        /* A thread whose innermost call and instruction did not move may not have run
         * at all: its CPU clock tells. If it did not, its context is the same too. */
        const Entry *leaf = &w->entries[start];
        const Entry *was = before != NULL && before->depth > 0 ? &prev->entries[before->start] : NULL;
        if (was != NULL && was->frame == leaf->frame && was->code == leaf->code
            && was->lasti == leaf->lasti)
            t->cpu_ns = thread_cpu_ns(t->native_id);
        if (t->cpu_ns >= 0 && t->cpu_ns == before->cpu_ns && before->mapping == st->mapping) {
            t->span_state = before->span_state;
            t->span = before->span;
        }
        else
            t->span_state = spans != NULL && spans->enabled && st->have_mapping
                                 ? span_in(spans, st->mapping, &t->span)
                                 : SPAN_UNKNOWN;
        if (t->depth > counts->max_depth)
            counts->max_depth = t->depth;
        counts->threads++;
    }
    return 0;
}

/* -- the native sampling thread --------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    uintptr_t interp;
    pthread_mutex_t mutex; /* guards `latest`, `counts` and the thread's state */
    pthread_t thread;
    int running;
    _Atomic int stopping;
    _Atomic long long interval_ns; /* may be changed while the thread runs */
    Walk scratch; /* the native thread's own */
    Walk latest;  /* the last complete walk, swapped in under `mutex` */
    Counts counts;
    double cpu_s; /* the native thread's CPU time, updated every walk */
    int paused_for_fork;
    pthread_mutex_t known_mutex; /* guards `known`: held for a whole walk */
    KnownTable known;
    SpanLookup spans;
    PyObject *span_refs; /* (var, key, invalid): what `spans` points at, referenced */
    PyObject *pinned; /* list: the code objects in `known`, referenced */
    Py_ssize_t pin_limit;
    int following;  /* the native thread follows calls in `chains` (under `mutex`) */
    Chains chains;
    spangap_activations_of activations_of; /* or NULL: then no thread is ever dark */
} Reader;

static Reader *fork_reader; /* the running reader, stopped around fork() */
static pthread_mutex_t fork_mutex = PTHREAD_MUTEX_INITIALIZER;

static double
thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Follow calls through the walk `w` taken at `now`. */
static void
follow_calls(Reader *self, const Walk *w, double now)
{
    Chains *c = &self->chains;
    if (w->nstates == 0)
        return; /* the thread list changed under the read: nothing is known of this walk */
    chains_begin(c);
    Py_ssize_t stack_no = 0;
    for (Py_ssize_t i = 0; i < w->nstates; i++) {
        const StateRead *st = &w->states[i];
        unsigned long tid = st->copy.thread_id;
        /* No frame (or a stack not read whole) says nothing of its calls: a thread
         * between two C-level calls can show none for an instant. They end when a
         * stack read whole shows them gone, or when the thread is gone. */
        if (st->walked != WALKED_STACK) {
            chains_skip(c, tid);
            continue;
        }
        ChainSample sample = {tid, st->address, now, -1, 0, 0};
        sample.activations =
            self->activations_of != NULL ? self->activations_of(tid, st->address) : 0;
        const ThreadStack *t = &w->threads[stack_no++];
        const Entry *leaf = &w->entries[t->start];
        sample.cpu_ns = t->cpu_ns; /* -1 when it moved, and so ran */
        sample.span_none = t->span_state == SPAN_NONE && self->activations_of != NULL;
        chains_observe(c, &sample, leaf, t->depth);
    }
    chains_end(c, now, self->activations_of);
}

static void
counts_add(Counts *to, const Counts *c)
{
    to->walks += c->walks;
    to->threads += c->threads;
    to->frames += c->frames;
    to->torn += c->torn;
    to->invalid += c->invalid;
    to->unreadable += c->unreadable;
    to->code_reads += c->code_reads;
    to->frames_reused += c->frames_reused;
    if (c->max_depth > to->max_depth)
        to->max_depth = c->max_depth;
}

/* One walk of every thread but `skip_tid`, made the latest, with calls followed through
 * it when following; `native`: called on the native thread, whose CPU clock it reads. */
static void
walk_and_follow(Reader *self, unsigned long skip_tid, int native)
{
    Counts counts = {0};
    double walked_at = monotonic_s();
    pthread_mutex_lock(&self->known_mutex);
    int failed = walk_all(&self->scratch, &self->latest, self->interp, skip_tid, &self->known,
                          &self->spans, &counts) < 0;
    pthread_mutex_unlock(&self->known_mutex);
    pthread_mutex_lock(&self->mutex);
    if (!failed) {
        if (self->following)
            follow_calls(self, &self->scratch, walked_at);
        Walk swap = self->latest;
        self->latest = self->scratch;
        self->scratch = swap;
    }
    counts_add(&self->counts, &counts);
    if (native)
        self->cpu_s = thread_cpu_s();
    pthread_mutex_unlock(&self->mutex);
}

static void *
sampling_thread(void *arg)
{
    Reader *self = arg;
    unsigned long own = (unsigned long)pthread_self();
    pthread_setname_np(pthread_self(), "spangap-stacks"); /* as top and perf show it */
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    while (!atomic_load(&self->stopping)) {
        walk_and_follow(self, own, 1);
        deadline.tv_nsec += atomic_load(&self->interval_ns);
        while (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_nsec -= 1000000000L;
            deadline.tv_sec++;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > deadline.tv_sec + 1)
            deadline = now; /* fell far behind (a stopped process): no burst */
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR)
            if (atomic_load(&self->stopping))
                break;
    }
    return NULL;
}

/* Start the thread; the caller holds fork_mutex, as every caller of stop_thread does. */
static int
start_thread(Reader *self)
{
    atomic_store(&self->stopping, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&self->thread, &attr, sampling_thread, self);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -1;
    self->running = 1;
    return 0;
}

static void
stop_thread(Reader *self)
{
    if (!self->running)
        return;
    atomic_store(&self->stopping, 1);
    pthread_join(self->thread, NULL);
    self->running = 0;
}

/* fork(): the native thread does not exist in the child, and must not be in the middle
 * of a read of the thread list while the parent's memory is copied. It is stopped
 * before and started again after, in the parent; the child starts without it. */
static void
before_fork(void)
{
    pthread_mutex_lock(&fork_mutex);
    if (fork_reader != NULL && fork_reader->running) {
        stop_thread(fork_reader);
        fork_reader->paused_for_fork = 1;
    }
}

static void
after_fork_parent(void)
{
    if (fork_reader != NULL && fork_reader->paused_for_fork) {
        fork_reader->paused_for_fork = 0;
        start_thread(fork_reader);
    }
    pthread_mutex_unlock(&fork_mutex);
}

static void
after_fork_child(void)
{
    safecopy_after_fork_child();
    if (fork_reader != NULL) {
        fork_reader->paused_for_fork = 0;
        fork_reader->running = 0;
        pthread_mutex_init(&fork_reader->mutex, NULL);
        fork_reader = NULL;
    }
    pthread_mutex_init(&fork_mutex, NULL);
}

/* -- the Python type -------------------------------------------------------------------- */

/* One thread's stack as [(code address, lasti), ...], innermost first. */
static PyObject *
stack_of(const Walk *w, const ThreadStack *t)
{
    PyObject *stack = PyList_New(t->depth);
    for (Py_ssize_t j = 0; stack != NULL && j < t->depth; j++) {
        const Entry *e = &w->entries[t->start + j];
        PyObject *item = Py_BuildValue("(Ki)", (unsigned long long)e->code, (int)e->lasti);
        if (item == NULL)
            Py_CLEAR(stack);
        else
            PyList_SET_ITEM(stack, j, item);
    }
    return stack;
}

/* One thread's span: its address, 0 for no span, None when unknown. */
static PyObject *
span_of(const Walk *w, const ThreadStack *t)
{
    if (t->span_state == SPAN_UNKNOWN)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(
        t->span_state == SPAN_FOUND ? (unsigned long long)t->span : 0);
}

/* {thread id: value_of(thread)} for every thread of the walk. */
static PyObject *
per_thread(const Walk *w, PyObject *(*value_of)(const Walk *, const ThreadStack *))
{
    PyObject *result = PyDict_New();
    for (Py_ssize_t i = 0; result != NULL && i < w->nthreads; i++) {
        const ThreadStack *t = &w->threads[i];
        PyObject *key = PyLong_FromUnsignedLong(t->thread_id);
        PyObject *value = key != NULL ? value_of(w, t) : NULL;
        if (value == NULL || PyDict_SetItem(result, key, value) < 0)
            Py_CLEAR(result);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return result;
}

/* (stacks, spans, counts) for Python. */
static PyObject *
walk_result(const Walk *w, const Counts *counts, double cpu_s);

static PyObject *
counts_to_dict(const Counts *c, double cpu_s)
{
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsnsd}", "walks", c->walks, "threads", c->threads,
                         "frames", c->frames, "frames_reused", c->frames_reused, "torn",
                         c->torn, "invalid", c->invalid, "unreadable", c->unreadable,
                         "code_reads", c->code_reads, "max_depth", c->max_depth, "cpu_s",
                         cpu_s);
}

static PyObject *
walk_result(const Walk *w, const Counts *counts, double cpu_s)
{
    PyObject *stacks = per_thread(w, stack_of);
    PyObject *spans = stacks ? per_thread(w, span_of) : NULL;
    PyObject *c = spans ? counts_to_dict(counts, cpu_s) : NULL;
    if (c == NULL) {
        Py_XDECREF(stacks);
        Py_XDECREF(spans);
        return NULL;
    }
    return Py_BuildValue("(NNN)", stacks, spans, c);
}

/* Learn where OpenTelemetry keeps the span: `var` its ContextVar, `key` the span's key
 * in an OpenTelemetry Context, `invalid` the object that means "no span". */
static int
set_span_lookup(Reader *self, PyObject *var, PyObject *key, PyObject *invalid)
{
    if (var == Py_None) {
        self->spans.enabled = 0;
        return 0;
    }
    if (!PyContextVar_CheckExact(var) || !PyUnicode_CheckExact(key)) {
        PyErr_SetString(PyExc_TypeError, "var must be a ContextVar and span_key a str");
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(var);
    if (hash == -1)
        return -1;
    int32_t folded = (int32_t)((uint32_t)(hash & 0xffffffff) ^ (uint32_t)((uint64_t)hash >> 32));
    if (folded == -1)
        folded = -2; /* hamt.c's folding */
    PyObject *refs = PyTuple_Pack(3, var, key, invalid);
    if (refs == NULL)
        return -1;
    Py_XSETREF(self->span_refs, refs);
    known_clear(&self->spans.mappings);
    memset(&self->spans, 0, sizeof(self->spans));
    self->spans.var = (uintptr_t)var;
    self->spans.key = (uintptr_t)key;
    self->spans.invalid = (uintptr_t)invalid;
    self->spans.hash = folded;
    self->spans.enabled = 1;
    return 0;
}

static int
reader_init(Reader *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"var", "span_key", "invalid_span", "pin_limit", NULL};
    PyObject *var = Py_None, *key = Py_None, *invalid = Py_None;
    Py_ssize_t pin_limit = 20000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OOOn", kwlist, &var, &key, &invalid,
                                     &pin_limit))
        return -1;
    if (pin_limit < 1) {
        PyErr_SetString(PyExc_ValueError, "pin_limit must be positive");
        return -1;
    }
    self->pin_limit = pin_limit;
    if (set_span_lookup(self, var, key, invalid) < 0)
        return -1;
    if (self->pinned == NULL && (self->pinned = PyList_New(0)) == NULL)
        return -1;
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "the reader is running");
        return -1;
    }
    self->interp = (uintptr_t)PyInterpreterState_Get();
    /* A thread is dark only where its span activations can be counted (_tracking). */
    self->activations_of = (spangap_activations_of)PyCapsule_Import(SPANGAP_ACTIVATIONS_CAPSULE, 0);
    if (self->activations_of == NULL)
        PyErr_Clear();
    return 0;
}

static PyObject *
reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Reader *self = (Reader *)type->tp_alloc(type, 0);
    if (self != NULL
        && (pthread_mutex_init(&self->mutex, NULL) != 0
            || pthread_mutex_init(&self->known_mutex, NULL) != 0)) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

/* Stop the native thread; called with the GIL, which is let go before fork_mutex is
 * taken, never the other way round: a thread in os.fork() holds the GIL and waits for
 * fork_mutex in before_fork(). */
static void
stop_reader(Reader *self)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&fork_mutex);
    stop_thread(self);
    if (fork_reader == self)
        fork_reader = NULL;
    pthread_mutex_unlock(&fork_mutex);
    Py_END_ALLOW_THREADS
}

static void
reader_dealloc(Reader *self)
{
    stop_reader(self);
    walk_free(&self->scratch);
    walk_free(&self->latest);
    chains_free(&self->chains);
    known_clear(&self->known);
    known_clear(&self->spans.mappings);
    Py_XDECREF(self->pinned);
    Py_XDECREF(self->span_refs);
    pthread_mutex_destroy(&self->mutex);
    pthread_mutex_destroy(&self->known_mutex);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(pin_doc,
"pin() -> int\n\n"
"Keep a reference to every code object now running in any thread, and to each thread's\n"
"context mapping with the span it holds, so that walks know them without reading\n"
"them; returns how many were new. Needs the GIL (held while it runs, so that no\n"
"thread's frames move). Past pin_limit what is pinned starts over.");

static PyObject *
reader_pin(Reader *self, PyObject *Py_UNUSED(ignored))
{
    Walk w = {0};
    Counts counts = {0};
    PyObject *dropped = NULL;
    Py_ssize_t added = 0;
    int failed = 0;
    /* No Python code may run from the walk to the last reference taken: a collection's
     * finalizer could let the GIL go, and a thread return from a frame just read. */
    int gc_was_enabled = PyGC_Disable();
    pthread_mutex_lock(&self->known_mutex);
    if (walk_all(&w, NULL, self->interp, 0, &self->known, &self->spans, &counts) < 0)
        failed = 1;
    if (!failed
        && self->known.used + self->spans.mappings.used + w.nentries + w.nthreads
               > self->pin_limit) {
        known_clear(&self->known); /* start over rather than grow without end */
        known_clear(&self->spans.mappings);
        dropped = self->pinned;
        self->pinned = PyList_New(0); /* the collector is paused: no code runs here */
        failed = self->pinned == NULL;
    }
    for (Py_ssize_t i = 0; !failed && i < w.nentries; i++) {
        uintptr_t address = w.entries[i].code;
        if (known_find(&self->known, address) != NULL)
            continue;
        PyObject *code = (PyObject *)address; /* on a stack that cannot move: alive */
        if (!PyCode_Check(code) || PyList_Append(self->pinned, code) < 0
            || known_put(&self->known, address, 0, (int32_t)Py_SIZE(code),
                         ((PyCodeObject *)code)->_co_firsttraceable) < 0)
            failed = 1;
        else
            added++;
    }
    /* Each thread's context mapping, with the span it holds: immutable, and alive while
     * it is its thread's executing context's. */
    for (Py_ssize_t i = 0; !failed && i < w.nthreads; i++) {
        const ThreadStack *t = &w.threads[i];
        if (t->mapping == 0 || t->span_state == SPAN_UNKNOWN
            || known_find(&self->spans.mappings, t->mapping) != NULL)
            continue;
        if (PyList_Append(self->pinned, (PyObject *)t->mapping) < 0
            || known_put(&self->spans.mappings, t->mapping, t->span, t->span_state, 0) < 0)
            failed = 1;
        else
            added++;
    }
    pthread_mutex_unlock(&self->known_mutex);
    walk_free(&w);
    if (gc_was_enabled)
        PyGC_Enable();
    Py_XDECREF(dropped); /* last: a code object's weakref callbacks may run code */
    if (failed) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return NULL;
    }
    return PyLong_FromSsize_t(added);
}

PyDoc_STRVAR(pin_codes_doc,
"pin_codes(codes) -> int\n\n"
"Keep a reference to each of these code objects, so that walks know them without\n"
"reading them; returns how many were new (none past pin_limit).");

static PyObject *
reader_pin_codes(Reader *self, PyObject *codes)
{
    /* Copied first: iterating may run Python code, which must not happen while the
     * walks' mutex is held with the GIL. */
    PyObject *seq = PySequence_Fast(codes, "pin_codes() needs an iterable of code objects");
    if (seq == NULL)
        return NULL;
    Py_ssize_t added = 0;
    int failed = 0;
    pthread_mutex_lock(&self->known_mutex);
    for (Py_ssize_t i = 0; !failed && i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *code = PySequence_Fast_GET_ITEM(seq, i);
        uintptr_t address = (uintptr_t)code;
        if (!PyCode_Check(code) || known_find(&self->known, address) != NULL
            || self->known.used + self->spans.mappings.used >= self->pin_limit)
            continue;
        if (PyList_Append(self->pinned, code) < 0
            || known_put(&self->known, address, 0, (int32_t)Py_SIZE(code),
                         ((PyCodeObject *)code)->_co_firsttraceable) < 0)
            failed = 1;
        else
            added++;
    }
    pthread_mutex_unlock(&self->known_mutex);
    Py_DECREF(seq);
    if (failed) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return NULL;
    }
    return PyLong_FromSsize_t(added);
}

PyDoc_STRVAR(walk_doc,
"walk(release_gil=True) -> (stacks, spans, counts)\n\n"
"Read every thread's stack once from this thread, without the GIL unless\n"
"release_gil is False: {thread id: [(code address, lasti), ...] innermost first},\n"
"{thread id: span address, 0 for none, None when unknown}, and what the walk\n"
"counted (dropped stacks among them).");

/* One walk from the calling thread, with the pinned objects held still. */
static int
walk_once(Reader *self, Walk *w, Counts *counts)
{
    pthread_mutex_lock(&self->known_mutex);
    int rc = walk_all(w, NULL, self->interp, 0, &self->known, &self->spans, counts);
    pthread_mutex_unlock(&self->known_mutex);
    return rc;
}

static PyObject *
reader_walk(Reader *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"release_gil", NULL};
    int release = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p", kwlist, &release))
        return NULL;
    Walk w = {0};
    Counts counts = {0};
    int rc;
    if (release) {
        Py_BEGIN_ALLOW_THREADS
        rc = walk_once(self, &w, &counts);
        Py_END_ALLOW_THREADS
    }
    else
        rc = walk_once(self, &w, &counts); /* the native thread never waits for the GIL */
    if (rc < 0) {
        walk_free(&w);
        return PyErr_NoMemory();
    }
    PyObject *result = walk_result(&w, &counts, 0.0);
    walk_free(&w);
    return result;
}

PyDoc_STRVAR(start_doc,
"start(interval_s, *, threshold_s=0.0, max_correction_s=0.0, keep=10000)\n\n"
"Walk every thread's stack on a native thread, every interval_s, never taking the GIL.\n"
"With threshold_s, also follow calls through the walks and keep (up to `keep`) those\n"
"proven to have lasted threshold_s, dark, for take(); see c/_chains.h. One reader runs\n"
"at a time in a process.");

static PyObject *
reader_start(Reader *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"interval_s", "threshold_s", "max_correction_s", "keep", NULL};
    double interval, threshold = 0.0, max_correction = 0.0;
    Py_ssize_t keep = 10000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "d|$ddn", kwlist, &interval, &threshold,
                                     &max_correction, &keep))
        return NULL;
    if (!(interval >= 1e-5 && interval <= 10.0)) {
        PyErr_SetString(PyExc_ValueError, "interval_s must be between 1e-5 and 10");
        return NULL;
    }
    if (!(threshold >= 0.0) || !(max_correction >= 0.0)
        || (threshold > 0.0 && max_correction >= threshold) || keep < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "threshold_s and max_correction_s must be >= 0, the correction "
                        "below the threshold, and keep positive");
        return NULL;
    }
    pthread_mutex_lock(&self->mutex);
    chains_free(&self->chains);
    chains_init(&self->chains, threshold, max_correction, keep);
    self->following = threshold > 0.0;
    pthread_mutex_unlock(&self->mutex);
    pthread_mutex_lock(&fork_mutex);
    if (self->running || (fork_reader != NULL && fork_reader != self)) {
        pthread_mutex_unlock(&fork_mutex);
        PyErr_SetString(PyExc_RuntimeError, "a native stack reader is already running");
        return NULL;
    }
    atomic_store(&self->interval_ns, (long long)(interval * 1e9));
    int rc = start_thread(self);
    if (rc == 0)
        fork_reader = self;
    pthread_mutex_unlock(&fork_mutex);
    if (rc < 0) {
        PyErr_SetString(PyExc_RuntimeError, "could not start the native thread");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
reader_stop(Reader *self, PyObject *Py_UNUSED(ignored))
{
    int was_running = self->running;
    stop_reader(self);
    if (was_running && self->following) {
        /* One last walk: calls that ended since the thread's last one are recorded. */
        Py_BEGIN_ALLOW_THREADS
        walk_and_follow(self, 0, 0);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(latest_doc,
"latest() -> (stacks, spans, counts)\n\n"
"The native thread's last complete walk, and its counts since start().");

static PyObject *
reader_latest(Reader *self, PyObject *Py_UNUSED(ignored))
{
    Walk copy = {0};
    Counts counts;
    double cpu;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mutex);
    counts = self->counts;
    cpu = self->cpu_s;
    if (walk_reserve(&copy, self->latest.nentries, self->latest.nthreads) < 0)
        failed = 1;
    else {
        if (self->latest.nentries > 0)
            memcpy(copy.entries, self->latest.entries,
                   (size_t)self->latest.nentries * sizeof(Entry));
        if (self->latest.nthreads > 0)
            memcpy(copy.threads, self->latest.threads,
                   (size_t)self->latest.nthreads * sizeof(ThreadStack));
        copy.nentries = self->latest.nentries;
        copy.nthreads = self->latest.nthreads;
    }
    pthread_mutex_unlock(&self->mutex);
    Py_END_ALLOW_THREADS
    if (failed) {
        walk_free(&copy);
        return PyErr_NoMemory();
    }
    PyObject *result = walk_result(&copy, &counts, cpu);
    walk_free(&copy);
    return result;
}

/* One record for Python (see take_doc). */
static PyObject *
record_to_tuple(const ChainRecord *r)
{
    PyObject *callers = PyTuple_New(r->ncallers);
    PyObject *callees = callers != NULL ? PyTuple_New(r->ncallees) : NULL;
    if (callees == NULL) {
        Py_XDECREF(callers);
        return NULL;
    }
    for (ssize_t i = 0; i < r->ncallers; i++) {
        PyObject *code = PyLong_FromUnsignedLongLong((unsigned long long)r->callers[i]);
        if (code == NULL)
            goto fail;
        PyTuple_SET_ITEM(callers, i, code);
    }
    for (ssize_t i = 0; i < r->ncallees; i++) {
        const ChainFrame *f = &r->callees[i];
        PyObject *item = Py_BuildValue("(KKi)", (unsigned long long)f->frame,
                                       (unsigned long long)f->code, (int)f->lasti);
        if (item == NULL)
            goto fail;
        PyTuple_SET_ITEM(callees, i, item);
    }
    return Py_BuildValue("(kKKndddddLNNO)", r->thread_id, (unsigned long long)r->frame,
                         (unsigned long long)r->code, (Py_ssize_t)r->depth, r->first, r->last,
                         r->after_before, r->gone_by, r->duration, r->samples, callers,
                         callees, r->callees_cut ? Py_True : Py_False);
fail:
    Py_DECREF(callers);
    Py_DECREF(callees);
    return NULL;
}

/* The `n` records at `done` as a list; NULL on failure. */
static PyObject *
records_to_list(const ChainRecord *done, ssize_t n)
{
    PyObject *list = PyList_New(n);
    for (ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *item = record_to_tuple(&done[i]);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    return list;
}

PyDoc_STRVAR(take_doc,
"take() -> list\n\n"
"The calls the native thread recorded since the last take(), each as (thread id, frame\n"
"address, code address, depth from the root, the best run's first and last sample, the\n"
"samples the call began after and had ended by, duration, samples,\n"
"callers, callees, callees_cut): callers are code addresses, nearest first; callees\n"
"are (frame, code, lasti) from the call itself to the innermost frame of its best run.");

static PyObject *
reader_take(Reader *self, PyObject *Py_UNUSED(ignored))
{
    /* The records are taken out under the mutex, then made into objects without it. */
    ChainRecord *done;
    ssize_t n;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mutex);
    done = self->chains.done;
    n = self->chains.ndone;
    self->chains.done = NULL;
    self->chains.ndone = self->chains.done_cap = 0;
    pthread_mutex_unlock(&self->mutex);
    Py_END_ALLOW_THREADS
    PyObject *list = records_to_list(done, n);
    free(done);
    return list;
}

static PyObject *
reader_get_running(Reader *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->running);
}

static PyMethodDef reader_methods[] = {
    {"walk", (PyCFunction)(void (*)(void))reader_walk, METH_VARARGS | METH_KEYWORDS, walk_doc},
    {"start", (PyCFunction)(void (*)(void))reader_start, METH_VARARGS | METH_KEYWORDS, start_doc},
    {"take", (PyCFunction)reader_take, METH_NOARGS, take_doc},
    {"pin", (PyCFunction)reader_pin, METH_NOARGS, pin_doc},
    {"pin_codes", (PyCFunction)reader_pin_codes, METH_O, pin_codes_doc},
    {"stop", (PyCFunction)reader_stop, METH_NOARGS, "Stop the native thread and wait for it."},
    {"latest", (PyCFunction)reader_latest, METH_NOARGS, latest_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *
reader_get_cpu(Reader *self, void *Py_UNUSED(closure))
{
    pthread_mutex_lock(&self->mutex); /* held only for short copies: no GIL wait here */
    double cpu = self->cpu_s;
    pthread_mutex_unlock(&self->mutex);
    return PyFloat_FromDouble(cpu);
}

static PyObject *
reader_get_interval(Reader *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble((double)atomic_load(&self->interval_ns) / 1e9);
}

static int
reader_set_interval(Reader *self, PyObject *value, void *Py_UNUSED(closure))
{
    double interval = value != NULL ? PyFloat_AsDouble(value) : -1.0;
    if (interval == -1.0 && PyErr_Occurred())
        return -1;
    if (!(interval >= 1e-5 && interval <= 10.0)) {
        PyErr_SetString(PyExc_ValueError, "interval_s must be between 1e-5 and 10");
        return -1;
    }
    atomic_store(&self->interval_ns, (long long)(interval * 1e9));
    return 0;
}

static PyGetSetDef reader_getset[] = {
    {"interval_s", (getter)reader_get_interval, (setter)reader_set_interval,
     "Seconds between walks; may be changed while the native thread runs.", NULL},
    {"running", (getter)reader_get_running, NULL, "Whether the native thread runs.", NULL},
    {"cpu_seconds", (getter)reader_get_cpu, NULL,
     "The native thread's CPU time so far (updated every walk).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "spangap._stacks.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reads every thread's stack of this interpreter without the GIL.",
    .tp_new = reader_new,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
    .tp_getset = reader_getset,
};

/* -- chains fed from Python: the same code on recorded walks ----------------------------- */

typedef struct {
    PyObject_HEAD
    Chains chains;
} ChainsObject;

static int
chains_object_init(ChainsObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"threshold_s", "max_correction_s", NULL};
    double threshold, max_correction;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "dd", kwlist, &threshold, &max_correction))
        return -1;
    chains_free(&self->chains);
    chains_init(&self->chains, threshold, max_correction, 1000000);
    return 0;
}

static void
chains_object_dealloc(ChainsObject *self)
{
    chains_free(&self->chains);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* One thread of a recorded walk: (tid, cpu_ns, activations, span_none, stack or None). */
static int
feed_thread(Chains *c, double now, PyObject *item)
{
    unsigned long tid;
    long long cpu;
    unsigned long long activations;
    int span_none;
    PyObject *stack;
    if (!PyArg_ParseTuple(item, "kLKpO", &tid, &cpu, &activations, &span_none, &stack))
        return -1;
    if (stack == Py_None) {
        chains_skip(c, tid);
        return 0;
    }
    PyObject *seq = PySequence_Fast(stack, "a stack is a sequence of (frame, code, lasti)");
    if (seq == NULL)
        return -1;
    Py_ssize_t depth = PySequence_Fast_GET_SIZE(seq);
    ChainFrame *frames = PyMem_Calloc((size_t)(depth ? depth : 1), sizeof(ChainFrame));
    int rc = frames == NULL ? -1 : 0;
    for (Py_ssize_t i = 0; rc == 0 && i < depth; i++) {
        unsigned long long frame, code;
        int lasti;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "KKi", &frame, &code, &lasti))
            rc = -1;
        else
            frames[i] = (ChainFrame){(uintptr_t)frame, (uintptr_t)code, lasti};
    }
    ChainSample sample = {tid, 0, now, cpu, activations, span_none};
    if (rc == 0 && chains_observe(c, &sample, frames, depth) < 0) {
        PyErr_NoMemory();
        rc = -1;
    }
    PyMem_Free(frames);
    Py_DECREF(seq);
    return rc;
}

PyDoc_STRVAR(chains_observe_doc,
"observe(now, threads, ended)\n\n"
"One walk at `now`: threads is a list of (thread id, cpu_ns, activations, span_none,\n"
"stack) with the stack innermost first as (frame, code, lasti), or None for a thread\n"
"whose stack could not be read; a thread not listed has ended, and `ended` maps such\n"
"a thread to its activations so far (one missing there is taken to have made some).");

/* observe()'s `ended` mapping, seen by chains_end() through ended_activations(). */
static PyObject *feeding_ended;

static unsigned long long
ended_activations(unsigned long tid, uintptr_t Py_UNUSED(owner))
{
    PyObject *key = PyLong_FromUnsignedLong(tid);
    PyObject *count = key != NULL ? PyDict_GetItemWithError(feeding_ended, key) : NULL;
    Py_XDECREF(key);
    unsigned long long n = count != NULL ? PyLong_AsUnsignedLongLong(count) : (unsigned long long)-1;
    PyErr_Clear();
    return n;
}

static PyObject *
chains_object_observe(ChainsObject *self, PyObject *args)
{
    double now;
    PyObject *threads, *ended;
    if (!PyArg_ParseTuple(args, "dO!O!", &now, &PyList_Type, &threads, &PyDict_Type, &ended))
        return NULL;
    chains_begin(&self->chains);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(threads); i++)
        if (feed_thread(&self->chains, now, PyList_GET_ITEM(threads, i)) < 0)
            return NULL;
    feeding_ended = ended; /* under the GIL: no other caller meanwhile */
    chains_end(&self->chains, now, ended_activations);
    feeding_ended = NULL;
    Py_RETURN_NONE;
}

static PyObject *
chains_object_take(ChainsObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = records_to_list(self->chains.done, self->chains.ndone);
    self->chains.ndone = 0;
    return list;
}

static PyMethodDef chains_methods[] = {
    {"observe", (PyCFunction)chains_object_observe, METH_VARARGS, chains_observe_doc},
    {"take", (PyCFunction)chains_object_take, METH_NOARGS, "The records, as Reader.take()."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ChainsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "spangap._stacks.Chains",
    .tp_basicsize = sizeof(ChainsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The native thread's call follower (c/_chains.c), fed recorded walks.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)chains_object_init,
    .tp_dealloc = (destructor)chains_object_dealloc,
    .tp_methods = chains_methods,
};

PyDoc_STRVAR(usable_doc,
"usable() -> str | None\n\n"
"None when this process may read its own memory with process_vm_readv; else why not\n"
"(a seccomp filter or a container's policy can refuse it).");

static PyObject *
usable(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    static const char probe[8] = "spangap";
    char copy[8] = {0};
    struct iovec local = {copy, sizeof(copy)};
    struct iovec remote = {(void *)probe, sizeof(probe)};
    ssize_t got = process_vm_readv(atomic_load(&safecopy_pid), &local, 1, &remote, 1, 0);
    if (got == (ssize_t)sizeof(probe) && memcmp(copy, probe, sizeof(probe)) == 0)
        Py_RETURN_NONE;
    return PyUnicode_FromFormat("process_vm_readv on this process failed: %s",
                                got < 0 ? strerror(errno) : "short read");
}

PyDoc_STRVAR(code_address_doc,
"code_address(code) -> int\n\nThe address the walks report for a code object.");

static PyObject *
code_address(PyObject *Py_UNUSED(module), PyObject *code)
{
    if (!PyCode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "code_address() needs a code object");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)code);
}

PyDoc_STRVAR(copy_path_doc,
"copy_path(path=None) -> dict\n\n"
"How the walks copy memory: 'pipe' (writev into a pipe of our own, process_vm_readv\n"
"where the pipe cannot serve) or 'readv' (process_vm_readv only); with `path`, switch\n"
"first. The dict gives the path, how many batches went each way, how often the pipe\n"
"was found not ours, and its descriptors (-1 when none).");

static PyObject *
copy_path(PyObject *Py_UNUSED(module), PyObject *args)
{
    const char *path = NULL;
    if (!PyArg_ParseTuple(args, "|z:copy_path", &path))
        return NULL;
    SafeCopy *s = &safecopy;
    if (path != NULL && strcmp(path, "pipe") != 0 && strcmp(path, "readv") != 0) {
        PyErr_SetString(PyExc_ValueError, "copy_path() takes 'pipe' or 'readv'");
        return NULL;
    }
    pthread_mutex_lock(&s->mutex);
    if (path != NULL)
        s->disabled = strcmp(path, "readv") == 0;
    int disabled = s->disabled, given_up = s->given_up;
    int read_fd = s->read_fd, write_fd = s->write_fd;
    unsigned long long piped = s->piped, readv = s->readv, lost = s->lost;
    pthread_mutex_unlock(&s->mutex);
    return Py_BuildValue("{s:s,s:K,s:K,s:K,s:(ii)}", "path",
                         disabled || given_up ? "readv" : "pipe", "piped", piped, "readv",
                         readv, "lost", lost, "fds", read_fd, write_fd);
}

static PyMethodDef module_methods[] = {
    {"usable", usable, METH_NOARGS, usable_doc},
    {"copy_path", copy_path, METH_VARARGS, copy_path_doc},
    {"code_address", code_address, METH_O, code_address_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef stacks_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "spangap._stacks",
    .m_doc = "Every thread's stack, read without the GIL (see _stacks.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__stacks(void)
{
    atomic_store(&safecopy_pid, getpid());
    static int atfork_done;
    if (!atfork_done) {
        if (pthread_atfork(before_fork, after_fork_parent, after_fork_child) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
            return NULL;
        }
        atfork_done = 1;
    }
    if (PyType_Ready(&ReaderType) < 0 || PyType_Ready(&ChainsType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&stacks_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Reader", (PyObject *)&ReaderType) < 0
        || PyModule_AddObjectRef(module, "Chains", (PyObject *)&ChainsType) < 0
        || PyModule_AddIntConstant(module, "MAX_DEPTH", MAX_DEPTH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
