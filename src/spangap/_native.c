/* spangap._native: read every thread's *executing* contextvars context.
 *
 * The sampler runs in its own thread, but whether a sampled thread is "dark" depends on
 * the context that thread is executing right now, including one entered with
 * contextvars.Context.run(). CPython keeps that in PyThreadState.context; no Python API
 * exposes another thread's value, so we read it here, with the GIL held, which is what
 * makes the walk over the interpreter's thread list safe.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyDoc_STRVAR(spanned_threads_doc,
"spanned_threads(var, thread_ids, key, cache, is_active) -> set[int]\n\n"
"The ids among `thread_ids` (a dict keyed by thread id) whose executing context holds,\n"
"in the dict that is its value of `var`, an item `key` for which `is_active(item)` is\n"
"true. `cache` maps thread id to the last (item, answer): is_active is called only when\n"
"a thread's item is a different object (the cache holds it, so its id is not reused).\n"
"With OpenTelemetry: var holds the current Context, key is the span key, item the span.");

static PyObject *
spanned_threads(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyContextVar_CheckExact(args[0]) || !PyDict_Check(args[1])
        || !PyUnicode_CheckExact(args[2]) || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "spanned_threads(var: ContextVar, thread_ids: dict, "
                                         "key: str, cache: dict, is_active)");
        return NULL;
    }
    PyObject *var = args[0], *thread_ids = args[1], *item_key = args[2], *cache = args[3];
    PyObject *is_active = args[4];
    /* First collect (tid, value) without running any Python code: is_active may let
     * other threads run, and a thread that ends frees its PyThreadState. */
    PyObject *found = PyList_New(0);
    if (found == NULL)
        return NULL;
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
        if (wanted <= 0) {
            Py_DECREF(key);
            if (wanted < 0)
                goto error;
            continue;
        }
        PyObject *value = PyObject_GetItem(ctx, var); /* no Python code: see above */
        if (value == NULL) {
            Py_DECREF(key);
            if (!PyErr_ExceptionMatches(PyExc_KeyError))
                goto error;
            PyErr_Clear();
            continue;
        }
        /* The item, from the dict itself: a dict subclass's own __getitem__ is not run.
         * The key is a str, so the lookup runs no Python code either. */
        PyObject *item = PyDict_Check(value) ? PyDict_GetItemWithError(value, item_key) : NULL;
        Py_XINCREF(item);
        Py_DECREF(value);
        if (item == NULL) { /* no span in this context: not spanned */
            Py_DECREF(key);
            if (PyErr_Occurred())
                goto error;
            continue;
        }
        PyObject *pair = PyTuple_Pack(2, key, item);
        Py_DECREF(key);
        Py_DECREF(item);
        if (pair == NULL || PyList_Append(found, pair) < 0) {
            Py_XDECREF(pair);
            goto error;
        }
        Py_DECREF(pair);
    }
    PyObject *result = PySet_New(NULL);
    if (result == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(found); i++) {
        PyObject *key = PyTuple_GET_ITEM(PyList_GET_ITEM(found, i), 0);
        PyObject *value = PyTuple_GET_ITEM(PyList_GET_ITEM(found, i), 1);
        PyObject *cached = PyDict_GetItemWithError(cache, key); /* borrowed */
        int active;
        if (cached != NULL && PyTuple_Check(cached) && PyTuple_GET_SIZE(cached) == 2
            && PyTuple_GET_ITEM(cached, 0) == value) {
            active = PyTuple_GET_ITEM(cached, 1) == Py_True;
        }
        else {
            if (cached == NULL && PyErr_Occurred())
                goto error_result;
            PyObject *answer = PyObject_CallOneArg(is_active, value);
            active = answer == NULL ? -1 : PyObject_IsTrue(answer);
            Py_XDECREF(answer);
            if (active < 0)
                goto error_result;
            PyObject *entry = PyTuple_Pack(2, value, active ? Py_True : Py_False);
            if (entry == NULL || PyDict_SetItem(cache, key, entry) < 0) {
                Py_XDECREF(entry);
                goto error_result;
            }
            Py_DECREF(entry);
        }
        if (active && PySet_Add(result, key) < 0)
            goto error_result;
    }
    Py_DECREF(found);
    return result;
error_result:
    Py_DECREF(result);
error:
    Py_DECREF(found);
    return NULL;
}

static PyMethodDef native_methods[] = {
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
    return PyModule_Create(&native_module);
}
