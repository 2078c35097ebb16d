/* How many spans a thread has made current: counted by _tracking.c's activation note,
 * read by _stacks.c's native thread without the GIL. */
#ifndef SPANGAP_ACTIVATIONS_API_H
#define SPANGAP_ACTIVATIONS_API_H

#define SPANGAP_ACTIVATIONS_CAPSULE "spangap._tracking._activations_api"

#include <stdint.h>

/* The count for a thread id (threading.get_ident()) whose thread state is at `owner`;
 * never less than the spans it made current. Safe from any thread, with or without the
 * GIL. */
typedef unsigned long long (*spangap_activations_of)(unsigned long thread_id, uintptr_t owner);

#endif
