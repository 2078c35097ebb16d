/* The liveness watcher's C API, for _tracking: watching and ending a call without a
 * Python call each. Exported by _liveness as the capsule SPANGAP_LIVENESS_CAPSULE. */
#ifndef SPANGAP_LIVENESS_API_H
#define SPANGAP_LIVENESS_API_H

#include <Python.h>

#define SPANGAP_LIVENESS_CAPSULE "spangap._liveness._C_API"

typedef struct {
    PyTypeObject *watcher_type;
    /* watch(frame, now): the slot (>= 0), or -1 with an exception set. */
    int (*watch)(PyObject *watcher, PyObject *frame, double now);
    /* ended(slot): 0 with (last time seen running, first time seen returned or 0.0),
     * or -1 with an exception set. */
    int (*ended)(PyObject *watcher, int slot, double *last_alive, double *ended_at);
} SpangapLivenessAPI;

#endif
