/* Calls followed from native stack samples: see _chains.h for what is counted and why. */
#include "_chains.h"

#include <stdlib.h>
#include <string.h>

/* The innermost frames of a thread's stack during one run (the stack cannot change
 * within a run), shared by the calls whose best run it is. */
typedef struct {
    int refs;
    ssize_t base; /* the index from the root of frames[0] */
    ssize_t n;
    ChainFrame frames[CHAIN_CALLEES];
} Snapshot;

struct ChainLink {
    uintptr_t frame, code;
    int32_t lasti;
    int dark;          /* dark at every sample of the chain */
    long long samples; /* samples of the chain */
    double began_after; /* the thread's sample before the chain's first */
    double best;       /* the best finished run's estimate, or -1 */
    double best_first, best_last;
    Snapshot *best_snap;
};

struct ChainThread {
    unsigned long tid;
    uintptr_t owner;
    unsigned long long seen; /* the walk it was last seen in */
    double prev_time;        /* its previous sample */
    long long prev_cpu;      /* its CPU clock then */
    unsigned long long prev_activations;
    int force_ran;           /* its previous sample could not be read */
    double run_first, run_before; /* the current run: its first sample, the one before */
    long long run_len;
    Snapshot *run_snap; /* taken at the run's second sample */
    ChainLink *stack;   /* root -> leaf */
    ssize_t len, cap;
};

static void
snap_release(Snapshot *s)
{
    if (s != NULL && --s->refs == 0)
        free(s);
}

void
chains_init(Chains *c, double threshold, double max_correction, ssize_t done_limit)
{
    memset(c, 0, sizeof(*c));
    c->threshold = threshold;
    c->max_correction = max_correction;
    c->done_limit = done_limit;
}

static void
thread_free(ChainThread *t)
{
    for (ssize_t i = 0; i < t->len; i++)
        snap_release(t->stack[i].best_snap);
    snap_release(t->run_snap);
    free(t->stack);
    memset(t, 0, sizeof(*t));
}

void
chains_clear(Chains *c)
{
    for (ssize_t i = 0; i < c->nthreads; i++)
        thread_free(&c->threads[i]);
    c->nthreads = 0;
}

void
chains_free(Chains *c)
{
    chains_clear(c);
    free(c->threads);
    free(c->done);
    c->threads = NULL;
    c->done = NULL;
    c->threads_cap = c->done_cap = c->ndone = 0;
}

void
chains_begin(Chains *c)
{
    c->walk++;
}

/* The thread's entry, made when missing; NULL when memory ran out. Threads come in the
 * same order walk after walk: the search starts where the last one was found. */
static ChainThread *
thread_of(Chains *c, const ChainSample *s)
{
    for (ssize_t k = 0; k < c->nthreads; k++) {
        ssize_t i = (c->cursor + k) % c->nthreads;
        if (c->threads[i].tid == s->thread_id) {
            c->cursor = i + 1;
            return &c->threads[i];
        }
    }
    if (c->nthreads == c->threads_cap) {
        ssize_t cap = c->threads_cap ? c->threads_cap * 2 : 16;
        ChainThread *grown = realloc(c->threads, (size_t)cap * sizeof(ChainThread));
        if (grown == NULL)
            return NULL;
        c->threads = grown;
        c->threads_cap = cap;
    }
    ChainThread *t = &c->threads[c->nthreads++];
    memset(t, 0, sizeof(*t));
    t->tid = s->thread_id;
    t->prev_time = s->now; /* its calls' starts are unknown: no credit before them */
    t->run_first = t->run_before = s->now;
    t->force_ran = 1;
    c->cursor = c->nthreads;
    return t;
}

/* The estimate of a run from `first` to `last`, with the samples around it at `before`
 * and `after`: half of each unseen gap is credited, as the GIL sampler's tracker does. */
static double
estimate(const Chains *c, double before, double first, double last, double after)
{
    double unseen = ((first - before) + (after - last)) / 2;
    if (unseen > c->max_correction)
        unseen = c->max_correction;
    if (unseen < 0)
        unseen = 0;
    return (last - first) + unseen;
}

/* The thread's current run ended before `after`: each call on its stack that ran all
 * through it keeps it if it is its best. */
static void
finish_run(Chains *c, ChainThread *t, double after)
{
    if (t->run_len >= 2 && t->run_snap != NULL) {
        double last = t->prev_time;
        double est = estimate(c, t->run_before, t->run_first, last, after);
        for (ssize_t i = 0; i < t->len; i++) {
            ChainLink *l = &t->stack[i];
            if (est <= l->best)
                continue;
            l->best = est;
            l->best_first = t->run_first;
            l->best_last = last;
            snap_release(l->best_snap);
            l->best_snap = t->run_snap;
            t->run_snap->refs++;
        }
    }
    snap_release(t->run_snap);
    t->run_snap = NULL;
    t->run_len = 0;
}

static void
record(Chains *c, const ChainThread *t, ssize_t pos, double gone)
{
    const ChainLink *l = &t->stack[pos];
    if (!l->dark || l->best < c->threshold || l->best_snap == NULL)
        return;
    if (c->ndone >= c->done_limit) {
        c->dropped++;
        return;
    }
    if (c->ndone == c->done_cap) {
        ssize_t cap = c->done_cap ? c->done_cap * 2 : 64;
        if (cap > c->done_limit)
            cap = c->done_limit;
        ChainRecord *grown = realloc(c->done, (size_t)cap * sizeof(ChainRecord));
        if (grown == NULL) {
            c->dropped++;
            return;
        }
        c->done = grown;
        c->done_cap = cap;
    }
    ChainRecord *r = &c->done[c->ndone++];
    const Snapshot *s = l->best_snap;
    r->thread_id = t->tid;
    r->frame = l->frame;
    r->code = l->code;
    r->depth = pos;
    r->first = l->best_first;
    r->after_before = l->began_after;
    r->gone_by = gone;
    r->last = l->best_last;
    r->duration = l->best;
    r->samples = l->samples;
    r->ncallers = 0;
    for (ssize_t i = pos - 1; i >= 0 && r->ncallers < CHAIN_CALLERS; i--)
        r->callers[r->ncallers++] = t->stack[i].code;
    ssize_t from = pos > s->base ? pos - s->base : 0;
    r->callees_cut = pos < s->base;
    r->ncallees = s->n - from;
    memcpy(r->callees, &s->frames[from], (size_t)r->ncallees * sizeof(ChainFrame));
}

/* The calls at `keep` and above on the thread's stack are gone by `now`; `activated`:
 * a span was made current in the thread since its previous sample, maybe in them. */
static void
end_calls(Chains *c, ChainThread *t, ssize_t keep, double now, int activated)
{
    for (ssize_t i = t->len - 1; i >= keep; i--) {
        if (activated)
            t->stack[i].dark = 0;
        record(c, t, i, now);
        snap_release(t->stack[i].best_snap);
    }
    if (keep < t->len)
        t->len = keep;
}

static void
take_snapshot(ChainThread *t)
{
    Snapshot *s = malloc(sizeof(Snapshot));
    if (s == NULL)
        return; /* this run is not recorded */
    s->refs = 1;
    s->base = t->len > CHAIN_CALLEES ? t->len - CHAIN_CALLEES : 0;
    s->n = t->len - s->base;
    for (ssize_t i = 0; i < s->n; i++) {
        const ChainLink *l = &t->stack[s->base + i];
        s->frames[i] = (ChainFrame){l->frame, l->code, l->lasti};
    }
    t->run_snap = s;
}

/* The frame at index `i` from the root of a stack given innermost first. */
#define AT(stack, depth, i) (&(stack)[(depth) - 1 - (i)])

/* How many calls from the root are the same as at the previous sample. */
static ssize_t
common_calls(const ChainThread *t, const ChainFrame *stack, ssize_t depth, int ran)
{
    ssize_t k = 0;
    while (k < t->len && k < depth && t->stack[k].frame == AT(stack, depth, k)->frame
           && t->stack[k].code == AT(stack, depth, k)->code) {
        /* A caller at another instruction ran: what it called before has returned. */
        if (ran && k > 0 && t->stack[k - 1].lasti != AT(stack, depth, k - 1)->lasti)
            break;
        k++;
    }
    return k;
}

static int
same_stack(const ChainThread *t, const ChainFrame *stack, ssize_t depth)
{
    if (t->len != depth)
        return 0;
    for (ssize_t i = 0; i < depth; i++) {
        const ChainFrame *f = AT(stack, depth, i);
        const ChainLink *l = &t->stack[i];
        if (l->frame != f->frame || l->code != f->code || l->lasti != f->lasti)
            return 0;
    }
    return 1;
}

static int
observe(Chains *c, ChainThread *t, const ChainSample *s, const ChainFrame *stack,
        ssize_t depth)
{
    double now = s->now;
    t->seen = c->walk;
    int activated = s->activations != t->prev_activations;
    int dark = s->span_none && !activated;
    /* A thread whose CPU clock stood still ran no code: every call on its stack is the
     * one seen before. Anything else (a clock that moved or could not be read, another
     * stack, a sample missed) says nothing either way. */
    int ran = s->cpu_ns < 0 || s->cpu_ns != t->prev_cpu || t->force_ran
              || !same_stack(t, stack, depth);
    t->force_ran = 0;
    t->owner = s->owner;
    t->prev_cpu = s->cpu_ns;
    t->prev_activations = s->activations;
    ssize_t keep = common_calls(t, stack, depth, ran);
    if (ran)
        finish_run(c, t, now);
    end_calls(c, t, keep, now, activated);
    if (depth > t->cap) {
        ssize_t cap = t->cap ? t->cap : 16;
        while (cap < depth)
            cap *= 2;
        ChainLink *grown = realloc(t->stack, (size_t)cap * sizeof(ChainLink));
        if (grown == NULL)
            return -1;
        t->stack = grown;
        t->cap = cap;
    }
    for (ssize_t i = 0; i < depth; i++) {
        const ChainFrame *f = AT(stack, depth, i);
        ChainLink *l = &t->stack[i];
        if (i >= keep)
            *l = (ChainLink){f->frame, f->code, f->lasti, 1, 0, t->prev_time, -1.0, 0, 0, NULL};
        l->lasti = f->lasti;
        l->samples++;
        if (!dark)
            l->dark = 0;
    }
    t->len = depth;
    if (ran) {
        t->run_before = t->prev_time;
        t->run_first = now;
        t->run_len = 1;
    }
    else if (++t->run_len == 2)
        take_snapshot(t);
    t->prev_time = now;
    return 0;
}

int
chains_observe(Chains *c, const ChainSample *s, const ChainFrame *stack, ssize_t depth)
{
    ChainThread *t = thread_of(c, s);
    if (t == NULL)
        return -1;
    if (observe(c, t, s, stack, depth) < 0) {
        end_calls(c, t, 0, s->now, 1); /* not recorded as dark: nothing is known */
        t->force_ran = 1;
        return -1;
    }
    return 0;
}

void
chains_skip(Chains *c, unsigned long tid)
{
    for (ssize_t i = 0; i < c->nthreads; i++)
        if (c->threads[i].tid == tid) {
            c->threads[i].seen = c->walk;
            c->threads[i].force_ran = 1;
            return;
        }
}

void
chains_end(Chains *c, double now, unsigned long long (*activations_of)(unsigned long, uintptr_t))
{
    for (ssize_t i = 0; i < c->nthreads;) {
        ChainThread *t = &c->threads[i];
        if (t->seen == c->walk) {
            i++;
            continue;
        }
        finish_run(c, t, now);
        /* Its count is still there after it ended: a span made current in its last
         * calls keeps them uncounted. */
        int activated = activations_of == NULL || activations_of(t->tid, t->owner) != t->prev_activations;
        end_calls(c, t, 0, now, activated);
        thread_free(t);
        c->threads[i] = c->threads[--c->nthreads];
    }
}
