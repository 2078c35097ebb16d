/* spangap._native: read every thread's *executing* contextvars context.
 *
 * The sampler runs in its own thread, but whether a sampled thread is "dark" depends on
 * the context that thread is executing right now, including one entered with
 * contextvars.Context.run(). CPython keeps that in PyThreadState.context; no Python API
 * exposes another thread's value, so we read it here, with the GIL held and the garbage
 * collector paused, which is what makes the walk over the interpreter's thread list
 * safe: no Python code runs during it, so no thread can end and free its state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyDoc_STRVAR(spanned_threads_doc,
"spanned_threads(var, thread_ids, key, cache, is_active, plain=None) -> set[int]\n\n"
"The ids among `thread_ids` (a dict keyed by thread id) whose executing context holds,\n"
"in the dict that is its value of `var`, an item `key` for which `is_active(item)` is\n"
"true. `cache` maps thread id to the last (item, answer): is_active is called only when\n"
"a thread's item is a different object (the cache holds it, so its id is not reused).\n"
"With OpenTelemetry: var holds the current Context, key is the span key, item the span.\n"
"`plain` is (span types, SpanContext type): a span of exactly one of those types is\n"
"answered from its `_context` (a SpanContext, whose item 5 is is_valid), in C and\n"
"without keeping the span.");

static PyObject *str_context; /* "_context" */

/* For a span of one of the `plain` types: 1 if its SpanContext is valid, 0 if not, -1
 * if the span does not look as expected (is_active decides then). Runs no Python code:
 * the Python side admits only types whose attribute access is not customised. */
static int
plain_span_is_valid(PyObject *plain, PyObject *span)
{
    if (plain == NULL)
        return -1;
    PyObject *types = PyTuple_GET_ITEM(plain, 0), *context_type = PyTuple_GET_ITEM(plain, 1);
    int known = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(types) && !known; i++)
        known = (PyObject *)Py_TYPE(span) == PyTuple_GET_ITEM(types, i);
    if (!known)
        return -1;
    PyObject *context = PyObject_GetAttr(span, str_context);
    if (context == NULL) {
        PyErr_Clear();
        return -1;
    }
    int valid = -1;
    if ((PyObject *)Py_TYPE(context) == context_type && PyTuple_GET_SIZE(context) >= 6)
        valid = PyTuple_GET_ITEM(context, 5) == Py_True;
    Py_DECREF(context);
    return valid;
}

static PyObject *
spanned_threads(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *plain = nargs == 6 && args[5] != Py_None ? args[5] : NULL;
    if ((nargs != 5 && nargs != 6) || !PyContextVar_CheckExact(args[0]) || !PyDict_Check(args[1])
        || !PyUnicode_CheckExact(args[2]) || !PyDict_Check(args[3])
        || (plain != NULL
            && !(PyTuple_CheckExact(plain) && PyTuple_GET_SIZE(plain) == 2
                 && PyTuple_Check(PyTuple_GET_ITEM(plain, 0))
                 && PyType_Check(PyTuple_GET_ITEM(plain, 1))))) {
        PyErr_SetString(PyExc_TypeError, "spanned_threads(var: ContextVar, thread_ids: dict, "
                                         "key: str, cache: dict, is_active, plain=None)");
        return NULL;
    }
    PyObject *var = args[0], *thread_ids = args[1], *item_key = args[2], *cache = args[3];
    PyObject *is_active = args[4];
    PyObject *result = PySet_New(NULL);
    if (result == NULL)
        return NULL;
    /* First pass, over the interpreter's threads: it must run no Python code, since
     * that may let other threads run, and a thread that ends frees its PyThreadState.
     * Thread ids are ints and the span key a str, so every lookup here stays in C. A
     * thread whose span is the one cached for it is answered here; the others are
     * collected as (tid, span) for is_active, called in the second pass. */
    PyObject *unknown = NULL;
    /* The collector is paused for this pass: a collection started by an allocation here
     * could run finalizers that let the GIL go (see current_frames in _tracking.c). */
    int gc_was_enabled = PyGC_Disable(), gc_paused = 1;
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        PyObject *ctx = ts->context;
        if (ctx == NULL)
            continue;
        PyObject *key = PyLong_FromUnsignedLong(ts->thread_id);
        if (key == NULL)
            goto error;
        int wanted = PyDict_Contains(thread_ids, key);
        PyObject *value = wanted > 0 ? PyObject_GetItem(ctx, var) : NULL;
        if (value == NULL) {
            Py_DECREF(key);
            if (wanted < 0)
                goto error;
            if (wanted > 0) { /* no Context set in this thread: not spanned */
                if (!PyErr_ExceptionMatches(PyExc_KeyError))
                    goto error;
                PyErr_Clear();
            }
            continue;
        }
        /* The item, from the dict itself: a dict subclass's own __getitem__ is not run. */
        PyObject *item = PyDict_Check(value) ? PyDict_GetItemWithError(value, item_key) : NULL;
        Py_XINCREF(item);
        Py_DECREF(value);
        if (item == NULL) { /* no span in this context: not spanned */
            Py_DECREF(key);
            if (PyErr_Occurred())
                goto error;
            continue;
        }
        int valid = plain_span_is_valid(plain, item);
        if (valid >= 0) { /* answered from the span itself: nothing cached, nothing kept */
            int status = valid ? PySet_Add(result, key) : 0;
            Py_DECREF(key);
            Py_DECREF(item);
            if (status < 0)
                goto error;
            continue;
        }
        PyObject *cached = PyDict_GetItemWithError(cache, key); /* borrowed */
        int status = 0;
        if (cached != NULL && PyTuple_Check(cached) && PyTuple_GET_SIZE(cached) == 2
            && PyTuple_GET_ITEM(cached, 0) == item) {
            if (PyTuple_GET_ITEM(cached, 1) == Py_True)
                status = PySet_Add(result, key);
        }
        else if (PyErr_Occurred()) {
            status = -1;
        }
        else {
            PyObject *pair = PyTuple_Pack(2, key, item);
            if (unknown == NULL)
                unknown = PyList_New(0);
            status = pair == NULL || unknown == NULL ? -1 : PyList_Append(unknown, pair);
            Py_XDECREF(pair);
        }
        Py_DECREF(key);
        Py_DECREF(item);
        if (status < 0)
            goto error;
    }
    gc_paused = 0;
    if (gc_was_enabled)
        PyGC_Enable();
    /* Second pass: spans not seen before, through is_active (Python code may run). */
    for (Py_ssize_t i = 0; unknown != NULL && i < PyList_GET_SIZE(unknown); i++) {
        PyObject *key = PyTuple_GET_ITEM(PyList_GET_ITEM(unknown, i), 0);
        PyObject *item = PyTuple_GET_ITEM(PyList_GET_ITEM(unknown, i), 1);
        PyObject *answer = PyObject_CallOneArg(is_active, item);
        int active = answer == NULL ? -1 : PyObject_IsTrue(answer);
        Py_XDECREF(answer);
        if (active < 0)
            goto error;
        PyObject *entry = PyTuple_Pack(2, item, active ? Py_True : Py_False);
        if (entry == NULL || PyDict_SetItem(cache, key, entry) < 0) {
            Py_XDECREF(entry);
            goto error;
        }
        Py_DECREF(entry);
        if (active && PySet_Add(result, key) < 0)
            goto error;
    }
    Py_XDECREF(unknown);
    return result;
error:
    if (gc_paused && gc_was_enabled)
        PyGC_Enable();
    Py_XDECREF(unknown);
    Py_DECREF(result);
    return NULL;
}

PyDoc_STRVAR(holds_active_span_doc,
"holds_active_span(ctx, key, plain) -> bool | None\n\n"
"Whether the OpenTelemetry Context `ctx` (a dict) holds, under `key`, a span of one of\n"
"the `plain` types (see spanned_threads) whose span context is valid; None when that\n"
"cannot be told here (another kind of span), for spanstate.span_is_active to answer.\n"
"Runs no Python code: it is called inside the application's every attach.");

static PyObject *
holds_active_span(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyUnicode_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "holds_active_span(ctx, key: str, plain)");
        return NULL;
    }
    PyObject *ctx = args[0], *plain = args[2] != Py_None ? args[2] : NULL;
    if (!PyDict_Check(ctx))
        Py_RETURN_FALSE;
    PyObject *span = PyDict_GetItemWithError(ctx, args[1]); /* borrowed; the dict's own */
    if (span == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_FALSE;
    }
    if (plain != NULL && (!PyTuple_CheckExact(plain) || PyTuple_GET_SIZE(plain) != 2))
        plain = NULL;
    Py_INCREF(span);
    int valid = plain_span_is_valid(plain, span);
    Py_DECREF(span);
    if (valid < 0)
        Py_RETURN_NONE;
    return PyBool_FromLong(valid);
}

static PyMethodDef native_methods[] = {
    {"holds_active_span", (PyCFunction)(void (*)(void))holds_active_span, METH_FASTCALL,
     holds_active_span_doc},
    {"spanned_threads", (PyCFunction)(void (*)(void))spanned_threads, METH_FASTCALL,
     spanned_threads_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    "spangap._native",
    "Reads each thread's executing contextvars context (see spanned_threads).",
    -1,
    native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    str_context = PyUnicode_InternFromString("_context");
    if (str_context == NULL)
        return NULL;
    return PyModule_Create(&native_module);
}
