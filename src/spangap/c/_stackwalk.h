/* The calling thread's own frames, read without making frame objects (_stackwalk.c). */
#ifndef SPANGAP_STACKWALK_H
#define SPANGAP_STACKWALK_H

#include <Python.h>

/* Walk the calling thread's frames from the caller of the innermost Python function
 * towards the root. A frame that has a frame object goes, as that object, into `objs`
 * (a list); with `known` (a dict of frame objects), the walk stops at the first such
 * frame found in it and sets *join to its value. Any other frame goes into `addrs` (its
 * interpreter frame's address, a uintptr_t appended to a growable buffer) and `codes`
 * (a list). Returns 0, or -1 with an exception set. */
int spangap_walk_own(PyObject *known, PyObject *objs, char **addrs, Py_ssize_t *naddrs,
                     PyObject *codes, Py_ssize_t *join);

/* The address of the interpreter frame behind a frame object (its own copy once the
 * call has returned), or NULL for anything else. */
const void *spangap_frame_address(PyObject *frame);

#endif
