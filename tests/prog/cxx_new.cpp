// cxx_new: every C++14/17 operator new/delete form, run under LD_PRELOAD=libmesh.so by
// tests/integration/cxx_new.sh.  Checks that the operators are libmesh's own (not
// libstdc++'s wrappers around malloc), that the memory is libmesh's, that sized and
// aligned deletes work, that a failing new throws std::bad_alloc the program can catch,
// that nothrow new returns nullptr, and that the new_handler protocol is followed.
// Prints "cxx_new: ok" and exits 0, or names the first failed check and exits 1.
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

static int failures;
#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "cxx_new: line %d: check failed: %s\n", __LINE__, #cond); \
            failures++;                                                                \
        }                                                                              \
    } while (0)

using span_of_fn = uint32_t (*)(const void *);
using heap_check_fn = int (*)();
static span_of_fn span_of;

// Where the program's reference to an operator resolves to.
static bool from_libmesh(void *fn)
{
    Dl_info info;
    return dladdr(fn, &info) && info.dli_fname && std::strstr(info.dli_fname, "libmesh");
}

static void check_block(void *p, size_t n, size_t align)
{
    CHECK(p != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(p) % align == 0);
    CHECK(span_of(p) != 0); // in libmesh's arena
    std::memset(p, 0x5a, n);
}

// True if f() throws std::bad_alloc.
template <class F> static bool throws_bad_alloc(F f)
{
    try {
        f();
    } catch (const std::bad_alloc &) {
        return true;
    }
    return false;
}

static int handler_calls;
static void handler()
{
    // Gives up on the third call: the next try fails again and new throws.
    if (++handler_calls == 3)
        std::set_new_handler(nullptr);
}

int main()
{
    span_of = reinterpret_cast<span_of_fn>(dlsym(RTLD_DEFAULT, "mesh_span_of"));
    auto heap_check = reinterpret_cast<heap_check_fn>(dlsym(RTLD_DEFAULT, "mesh_heap_check"));
    if (!span_of || !heap_check) {
        std::fprintf(stderr, "cxx_new: libmesh is not preloaded\n");
        return 1;
    }
    // The operators themselves are libmesh's.
    CHECK(from_libmesh(reinterpret_cast<void *>(static_cast<void *(*)(size_t)>(::operator new))));
    CHECK(from_libmesh(reinterpret_cast<void *>(static_cast<void *(*)(size_t)>(::operator new[]))));
    CHECK(from_libmesh(reinterpret_cast<void *>(
        static_cast<void *(*)(size_t, std::align_val_t)>(::operator new))));
    CHECK(from_libmesh(reinterpret_cast<void *>(static_cast<void (*)(void *)>(::operator delete))));
    CHECK(from_libmesh(reinterpret_cast<void *>(
        static_cast<void (*)(void *, size_t, std::align_val_t)>(::operator delete[]))));

    // Every form, freed by its matching delete; small and large sizes.
    for (size_t n : {1ul, 24ul, 1000ul, 20000ul, 300000ul}) {
        void *p = ::operator new(n);
        check_block(p, n, n >= 16 ? 16 : 1);
        ::operator delete(p, n);
        p = ::operator new[](n);
        check_block(p, n, n >= 16 ? 16 : 1);
        ::operator delete[](p, n);
        p = ::operator new(n, std::nothrow);
        check_block(p, n, n >= 16 ? 16 : 1);
        ::operator delete(p, std::nothrow);
        p = ::operator new[](n, std::nothrow);
        check_block(p, n, n >= 16 ? 16 : 1);
        ::operator delete[](p, std::nothrow);
        p = ::operator new(n);
        ::operator delete(p);
        p = ::operator new[](n);
        ::operator delete[](p);
        for (size_t a : {32ul, 64ul, 4096ul, 65536ul}) {
            std::align_val_t al{a};
            p = ::operator new(n, al);
            check_block(p, n, a);
            ::operator delete(p, n, al);
            p = ::operator new[](n, al);
            check_block(p, n, a);
            ::operator delete[](p, n, al);
            p = ::operator new(n, al, std::nothrow);
            check_block(p, n, a);
            ::operator delete(p, al, std::nothrow);
            p = ::operator new[](n, al, std::nothrow);
            check_block(p, n, a);
            ::operator delete[](p, al, std::nothrow);
            p = ::operator new(n, al);
            ::operator delete(p, al);
            p = ::operator new[](n, al);
            ::operator delete[](p, al);
        }
    }
    // Ordinary C++: containers and new-expressions of over-aligned types.
    struct alignas(128) wide {
        char b[200];
    };
    std::vector<wide *> objs;
    for (int i = 0; i < 1000; i++) {
        objs.push_back(new wide);
        CHECK(reinterpret_cast<uintptr_t>(objs.back()) % 128 == 0);
    }
    for (wide *w : objs)
        delete w;

    // Failure: bad_alloc from the throwing forms, nullptr from the nothrow ones.
    volatile size_t huge = SIZE_MAX / 2;
    CHECK(throws_bad_alloc([&] { ::operator delete(::operator new(huge)); }));
    CHECK(throws_bad_alloc([&] { ::operator delete[](::operator new[](huge, std::align_val_t{64})); }));
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(::operator new[](huge, std::align_val_t{256}, std::nothrow) == nullptr);

    // The new_handler is called between tries until it gives up, then bad_alloc.
    std::set_new_handler(handler);
    CHECK(throws_bad_alloc([&] { ::operator delete(::operator new(huge)); }));
    CHECK(handler_calls == 3);
    handler_calls = 0;
    std::set_new_handler(handler);
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(handler_calls == 3);

    CHECK(heap_check() == 0);
    if (failures)
        return 1;
    std::puts("cxx_new: ok");
    return 0;
}
