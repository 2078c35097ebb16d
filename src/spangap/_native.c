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

PyDoc_STRVAR(thread_contexts_doc,
"thread_contexts() -> dict[int, contextvars.Context]\n\n"
"Map each thread id of this interpreter to the contextvars.Context it is executing.\n"
"Threads that never touched a context variable are absent.");

static PyObject *
thread_contexts(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        PyObject *ctx = ts->context;
        if (ctx == NULL) {
            continue;
        }
        PyObject *key = PyLong_FromUnsignedLong(ts->thread_id);
        if (key == NULL || PyDict_SetItem(result, key, ctx) < 0) {
            Py_XDECREF(key);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(key);
    }
    return result;
}

PyDoc_STRVAR(thread_values_doc,
"thread_values(var) -> dict[int, object]\n\n"
"Map each thread id to the value of the ContextVar `var` in the context that thread\n"
"is executing. Threads whose context has no value for `var` are absent.");

static PyObject *
thread_values(PyObject *self, PyObject *var)
{
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "thread_values() expects a contextvars.ContextVar");
        return NULL;
    }
    PyObject *result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        PyObject *ctx = ts->context;
        if (ctx == NULL) {
            continue;
        }
        /* A Context is a mapping of ContextVar -> value; the lookup does not run any
         * Python code (ContextVar hashes by identity), so it cannot re-enter us. */
        PyObject *value = PyObject_GetItem(ctx, var);
        if (value == NULL) {
            if (PyErr_ExceptionMatches(PyExc_KeyError)) {
                PyErr_Clear();
                continue;
            }
            Py_DECREF(result);
            return NULL;
        }
        PyObject *key = PyLong_FromUnsignedLong(ts->thread_id);
        int rc = key == NULL ? -1 : PyDict_SetItem(result, key, value);
        Py_XDECREF(key);
        Py_DECREF(value);
        if (rc < 0) {
            Py_DECREF(result);
            return NULL;
        }
    }
    return result;
}

static PyMethodDef native_methods[] = {
    {"thread_contexts", thread_contexts, METH_NOARGS, thread_contexts_doc},
    {"thread_values", thread_values, METH_O, thread_values_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    "spangap._native",
    "Reads each thread's executing contextvars context (see thread_contexts).",
    -1,
    native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModule_Create(&native_module);
}
