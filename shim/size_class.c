/* size_class.c: builds the class table once at initialisation. */
#include "size_class.h"

struct mesh_class mesh_classes[MESH_CLASS_COUNT + 1];
uint8_t mesh_class_of_index[MESH_MAX_SMALL / 16 + 1];

/* Span shape: the fewest pages whose tail waste is <= 1/16 of the span and that hold at
 * least min_objects (8, or 4 above one page) so per-span overhead stays amortised. */
static void choose_span(struct mesh_class *c)
{
    unsigned min_objects = c->size > MESH_PAGE_SIZE ? 4 : 8;
    for (unsigned pages = 1; pages <= 32; pages++) {
        uint32_t bytes = pages * MESH_PAGE_SIZE;
        uint32_t cap = bytes / c->size;
        if (cap > MESH_MAX_SPAN_OBJECTS)
            cap = MESH_MAX_SPAN_OBJECTS;
        uint32_t waste = bytes - cap * c->size;
        if (cap >= min_objects && waste * 16 <= bytes) {
            c->span_pages = (uint16_t)pages;
            c->capacity = (uint16_t)cap;
            return;
        }
    }
    MESH_CHECK(!"no span shape for size class");
}

void mesh_size_classes_init(void)
{
    unsigned n = 0;
    uint32_t size = 16;
    while (size <= MESH_MAX_SMALL) {
        struct mesh_class *c = &mesh_classes[++n];
        c->size = size;
        c->recip = (uint32_t)((1ull << 32) / size + 1);
        choose_span(c);
        /* 16-byte steps to 128, then four classes per doubling. */
        size += size < 128 ? 16 : (uint32_t)(1u << (31 - __builtin_clz(size))) / 4;
    }
    MESH_CHECK(n == MESH_CLASS_COUNT);
    unsigned cls = 1;
    for (unsigned i = 0; i <= MESH_MAX_SMALL / 16; i++) {
        size_t bytes = i ? (size_t)i * 16 : 1;
        while (mesh_classes[cls].size < bytes)
            cls++;
        mesh_class_of_index[i] = (uint8_t)cls;
    }
}

unsigned mesh_class_for_aligned(size_t n, size_t align)
{
    if (n > MESH_MAX_SMALL)
        return 0;
    for (unsigned c = mesh_class_of(n); c <= MESH_CLASS_COUNT; c++)
        if (mesh_classes[c].size % align == 0)
            return c;
    return 0;
}
