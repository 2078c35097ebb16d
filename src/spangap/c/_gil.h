/* Reading the GIL's hand-over state: which thread holds it and how many times it has
 * changed hands. Used by the liveness watcher (_liveness.c) to know how long a thread's
 * Python stack has been unchanged: a thread that has not held the GIL since some moment
 * has run no Python code since then. */
#ifndef SPANGAP_GIL_H
#define SPANGAP_GIL_H

typedef struct {
    const void *holder;     /* the PyThreadState holding it, or the last to hold it */
    unsigned long switches; /* hand-overs from one thread to another so far */
} GilState;

/* The GIL of the calling thread's interpreter (GIL held), or NULL where this build does
 * not know its layout (a free-threaded build has none). */
void *spangap_gil_of_this_interpreter(void);

/* Read `gil` from a thread that may not hold it, only if no thread is taking or
 * dropping it at this moment (the GIL's own mutex, which guards these fields, is free):
 * 1 with `out` set, or 0 and nothing read. Never blocks. */
int spangap_gil_try_read(void *gil, GilState *out);

/* Read `gil` while the calling thread holds it: the fields cannot change meanwhile. */
void spangap_gil_read_held(void *gil, GilState *out);

#endif
