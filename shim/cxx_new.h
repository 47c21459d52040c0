/*
 * cxx_new.h: what C++ operator new does when libmesh has no memory (cxx_new.c).
 *
 * malloc_api.c defines plain and nothrow new around malloc's inline fast path; a NULL
 * from it goes to these, which hand the request to the next definition of the same
 * operator (libstdc++'s: new_handler, then std::bad_alloc or nullptr).
 */
#ifndef MESH_CXX_NEW_H
#define MESH_CXX_NEW_H

#include <stddef.h>

void *mesh_cxx_new_failed(size_t n);                                   /* _Znwm */
void *mesh_cxx_new_array_failed(size_t n);                             /* _Znam */
void *mesh_cxx_new_nothrow_failed(size_t n, const void *tag);          /* _ZnwmRKSt9nothrow_t */
void *mesh_cxx_new_array_nothrow_failed(size_t n, const void *tag);    /* _ZnamRKSt9nothrow_t */

#endif
