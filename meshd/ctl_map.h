/*
 * ctl_map.h: `meshctl map PID`, a picture of one process's heap for people who would
 * rather look than read.
 *
 * One line per size class: object size, span count, a 10-cell occupancy bar and how full
 * the class is.  Cell i of the bar stands for the spans whose live/capacity lies in
 * [i/10, (i+1)/10) (the last cell includes full spans); its shade says how many spans fall
 * there relative to the class's busiest cell, from ' ' (none) to '@' (the most).  A heap
 * that meshing can shrink shows dark cells on the left; a compact one, on the right.
 * Plain ASCII only, whatever meshd sent.
 */
#ifndef MESHD_CTL_MAP_H
#define MESHD_CTL_MAP_H

#include <stdint.h>
#include <stdio.h>

#include "frame.h"

#define MAP_CELLS 10

/* Writes the whole picture: header, one line per class, a heap-wide line, legend, totals. */
void map_render(FILE *f, const Mesh__ProcessStats *p);

#endif
