/* The GIL's hand-over state (see _gil.h), read from CPython's internal structure.
 *
 * CPython keeps, in struct _gil_runtime_state, the thread state that last took the GIL
 * (`last_holder`) and a count of hand-overs to a different thread (`switch_number`).
 * take_gil() sets both while holding the GIL's `mutex` (the holder first, then the
 * count), so a read made while holding that mutex is consistent. We only ever try that
 * mutex (pthread_mutex_trylock), hold it for two loads and release it: a thread taking
 * or dropping the GIL waits at most that long, and we never wait for it. The structure
 * is internal to CPython, so this file alone is compiled as core code, for 3.11 to 3.13
 * with the GIL.
 */
#define Py_BUILD_CORE 1
#include <Python.h>

#if PY_VERSION_HEX >= 0x030C0000
#include "internal/pycore_interp.h"
#else
#include "internal/pycore_runtime.h"
#endif

#include <pthread.h>

#include "_gil.h"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030E0000 || defined(Py_GIL_DISABLED)
#define KNOWN_LAYOUT 0
#else
#define KNOWN_LAYOUT 1
#endif

#if KNOWN_LAYOUT
static void
read_fields(struct _gil_runtime_state *gil, GilState *out)
{
#if PY_VERSION_HEX >= 0x030D0000
    out->holder = gil->last_holder;
#else
    out->holder = (const void *)_Py_atomic_load_relaxed(&gil->last_holder);
#endif
    out->switches = gil->switch_number;
}
#endif

void *
spangap_gil_of_this_interpreter(void)
{
#if !KNOWN_LAYOUT
    return NULL;
#elif PY_VERSION_HEX >= 0x030C0000
    return PyInterpreterState_Get()->ceval.gil;
#else
    return &_PyRuntime.ceval.gil; /* 3.11: one GIL for the whole runtime */
#endif
}

int
spangap_gil_try_read(void *gil, GilState *out)
{
#if KNOWN_LAYOUT
    struct _gil_runtime_state *g = gil;
    if (pthread_mutex_trylock(&g->mutex) != 0) {
        return 0;
    }
    read_fields(g, out);
    pthread_mutex_unlock(&g->mutex);
    return 1;
#else
    (void)gil;
    (void)out;
    return 0;
#endif
}

void
spangap_gil_read_held(void *gil, GilState *out)
{
#if KNOWN_LAYOUT
    read_fields(gil, out);
#else
    (void)gil;
    out->holder = NULL;
    out->switches = 0;
#endif
}
