/* Calls followed from native stack samples, counted only where a sample proves them.
 *
 * Interpreter frames are reused: the next call at the same depth gets the same address,
 * so two samples showing the same frame address and code may show one call or two. This
 * tracker never guesses. Between two samples of a thread, either
 *   - the thread did not run at all (its CPU clock did not move): every call on its
 *     stack is the same call as before. Consecutive such samples form a *run*.
 *   - or it ran: a call whose caller moved on (another instruction) is a new call; any
 *     other call may be the same one or a new one started at the same place.
 * A frame followed across samples of unknown identity is a *chain*; a chain is counted
 * at most once, by its longest run (it may hold several calls, never fewer than one),
 * so a call is never counted twice and a run of short calls is never taken for one long
 * call. Work that holds the CPU (every sample a "ran") is left to the GIL-holding
 * sampler; calls that wait (I/O, sleeps, locks) are counted here at the walk's rate.
 *
 * Pure C, no Python objects: the native sampling thread calls it after each walk.
 */
#ifndef SPANGAP_CHAINS_H
#define SPANGAP_CHAINS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CHAIN_CALLERS 16  /* code addresses kept above a counted call, nearest first */
#define CHAIN_CALLEES 64  /* frames kept from a counted call to the innermost one */

typedef struct {
    uintptr_t frame; /* the interpreter frame's address */
    uintptr_t code;  /* the code object's address */
    int32_t lasti;
} ChainFrame;

/* A counted run of a chain: a call proven to have lasted `duration` (estimate). */
typedef struct {
    unsigned long thread_id;
    uintptr_t frame, code;
    ssize_t depth;     /* its index from the root */
    double first, last; /* the run's first and last sample */
    double after_before, gone_by; /* the call began after one, ended by the other */
    double duration;   /* last - first, with half of the unseen gaps (capped) */
    long long samples; /* samples of the chain */
    ssize_t ncallers, ncallees;
    int callees_cut; /* the stack below it was deeper than CHAIN_CALLEES */
    uintptr_t callers[CHAIN_CALLERS];
    ChainFrame callees[CHAIN_CALLEES]; /* the call itself first, then its callees */
} ChainRecord;

typedef struct ChainLink ChainLink;
typedef struct ChainThread ChainThread;

typedef struct {
    double threshold;      /* a run is recorded from this estimate on */
    double max_correction; /* the most the two half-gaps may add */
    ChainThread *threads;
    ssize_t nthreads, threads_cap;
    ChainRecord *done;
    ssize_t ndone, done_cap, done_limit;
    unsigned long long dropped; /* records not kept: `done` was full */
    unsigned long long walk;    /* the current walk's number */
    ssize_t cursor;             /* where the next thread is looked for first */
} Chains;

/* One thread at one walk, besides its stack. */
typedef struct {
    unsigned long thread_id;
    uintptr_t owner; /* its thread state's address */
    double now;
    long long cpu_ns;               /* its CPU clock, or -1 when it could not be read */
    unsigned long long activations; /* spans it has made current so far */
    int span_none;                  /* no active span in its executing context */
} ChainSample;

void chains_init(Chains *c, double threshold, double max_correction, ssize_t done_limit);
void chains_free(Chains *c);
/* Forget every thread's chains (nothing is recorded). */
void chains_clear(Chains *c);
/* Before the samples of one walk. */
void chains_begin(Chains *c);
/* One thread's sample, with its stack innermost first. It ran since its previous sample
 * unless its CPU clock stood still; it was dark unless a span was active or made
 * current since. 0, or -1 when memory ran out (its chains are dropped). */
int chains_observe(Chains *c, const ChainSample *s, const ChainFrame *stack, ssize_t depth);
/* A thread of the walk whose stack could not be read: its chains are kept, and its next
 * sample is taken as one after it ran. */
void chains_skip(Chains *c, unsigned long tid);
/* After the samples of one walk: the threads it did not see have ended. Their last
 * calls are counted only if `activations_of` (thread id, state -> activations so far) shows no
 * span made current since their last sample. */
void chains_end(Chains *c, double now,
                unsigned long long (*activations_of)(unsigned long, uintptr_t));

#endif
