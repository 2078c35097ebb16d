/* The calling thread's own frames, read from CPython's internal frame layout (3.11 to
 * 3.13) so that no frame object is made for a frame that has none: a span activation
 * notes the calls it runs in, many times a second, and making frame objects for them
 * would be most of its cost. Only the calling thread's frames are read, with the GIL
 * held and no Python code run, so none can change under the walk. Like _gil.c, this
 * file alone in its extension is compiled as core code.
 */
#define Py_BUILD_CORE 1
#include <Python.h>

#include "internal/pycore_frame.h"

#include "_stackwalk.h"

#if PY_VERSION_HEX >= 0x030D0000
#define CURRENT_FRAME(ts) ((ts)->current_frame)
#define FRAME_CODE(f) ((PyObject *)_PyFrame_GetCode(f))
#else
#define CURRENT_FRAME(ts) ((ts)->cframe->current_frame)
#define FRAME_CODE(f) ((PyObject *)(f)->f_code)
#endif

#define MAX_DEPTH 100000

/* A frame PyFrame_GetBack would step over: one not yet started, or a C-stack shim. */
static int
skipped(_PyInterpreterFrame *frame)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (frame->owner == FRAME_OWNED_BY_CSTACK)
        return 1;
#endif
    return _PyFrame_IsIncomplete(frame);
}

int
spangap_walk_own(PyObject *known, PyObject *objs, char **addrs, Py_ssize_t *naddrs,
                 PyObject *codes, Py_ssize_t *join)
{
    PyThreadState *ts = PyThreadState_Get();
    _PyInterpreterFrame *frame = CURRENT_FRAME(ts);
    Py_ssize_t cap = 0, depth = 0;
    *join = -1;
    *naddrs = 0;
    *addrs = NULL;
    if (frame != NULL)
        frame = frame->previous; /* the innermost Python function is the caller's */
    for (; frame != NULL && depth < MAX_DEPTH; frame = frame->previous, depth++) {
        if (skipped(frame))
            continue;
        PyObject *obj = (PyObject *)frame->frame_obj;
        if (obj != NULL) {
            if (known != NULL) {
                PyObject *at = PyDict_GetItemWithError(known, obj); /* borrowed */
                if (at != NULL) {
                    *join = PyLong_AsSsize_t(at);
                    return PyErr_Occurred() ? -1 : 0;
                }
                if (PyErr_Occurred())
                    return -1;
            }
            if (PyList_Append(objs, obj) < 0)
                return -1;
            continue;
        }
        if ((*naddrs + 1) * (Py_ssize_t)sizeof(uintptr_t) > cap) {
            Py_ssize_t grown = cap ? cap * 2 : 16 * (Py_ssize_t)sizeof(uintptr_t);
            char *more = PyMem_Realloc(*addrs, (size_t)grown);
            if (more == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            *addrs = more;
            cap = grown;
        }
        uintptr_t address = (uintptr_t)frame;
        memcpy(*addrs + *naddrs * (Py_ssize_t)sizeof(uintptr_t), &address, sizeof(address));
        (*naddrs)++;
        if (PyList_Append(codes, FRAME_CODE(frame)) < 0)
            return -1;
    }
    return 0;
}

const void *
spangap_frame_address(PyObject *frame)
{
    if (!PyFrame_Check(frame))
        return NULL;
    return ((PyFrameObject *)frame)->f_frame;
}
