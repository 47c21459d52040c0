# libmesh + meshd.  Every setting is overridable:  make CC=clang OPT=-O3 ...
#   make                      build/libmesh.so (and build/libmesh.a for tests)
#   make deps                 install the Debian packages of .ci/packages that are missing
#                             (root), or print the apt-get command; make test and make demo
#                             do this first
#   make test                 unit tests (check; the stress test among them), preload suite,
#                             integration tests, CPython's own tests under the shim
#                             (tests/cpython), then the fuzzers briefly from their seeds
#   make SANITIZER=address test   the same tests, built with a sanitizer, in build/san-address
#   make bench                allocator benchmarks against glibc/jemalloc/mimalloc/tcmalloc
#   make install PREFIX=/usr/local DESTDIR=
CC        ?= cc
OPT       ?= -O2
DEBUG     ?= -g
MESH_DEBUG ?= 0
SANITIZER ?=
PREFIX    ?= /usr/local
DESTDIR   ?=
LIBDIR    ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKG_CONFIG ?= pkg-config
# x86-64-v2 (2009 on) gives popcnt, which the occupancy bitmaps lean on.
ifeq ($(shell uname -m),x86_64)
ARCH      ?= -march=x86-64-v2
endif

ifeq ($(SANITIZER),)
BUILD     ?= build
SAN_FLAGS :=
else
BUILD     ?= build/san-$(SANITIZER)
# Findings fail the tests rather than scroll by.
SAN_FLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer $(if $(filter undefined,$(SANITIZER)),-fno-sanitize-recover=all)
# gcc 12 warns that ThreadSanitizer does not model atomic_thread_fence (the engine's and
# the thread heaps' fences); -Werror made that a build failure.  What TSan cannot see, it
# may report: tests/tsan.supp.
SAN_FLAGS += $(if $(filter thread,$(SANITIZER)),-Wno-tsan)
endif

WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
STD       := -std=c11 -D_GNU_SOURCE
CPPFLAGS  += -Iproto -Ishim -DMESH_DEBUG=$(MESH_DEBUG)
CFLAGS    ?= $(OPT) $(DEBUG) $(ARCH)
SHIM_CFLAGS := $(STD) $(WARN) $(CFLAGS) -fPIC -fvisibility=hidden -ftls-model=initial-exec \
               -fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc -fno-builtin-realloc \
               -fno-stack-protector -fno-plt
# Sanitized builds must not replace the sanitizer's own malloc: the shim's entry points are
# then reachable only by their mesh_* names, which is what the tests call.
ifneq ($(SANITIZER),)
SHIM_CFLAGS += -DMESH_NO_INTERPOSE $(SAN_FLAGS)
endif

PROTOBUF_LIBS := $(shell $(PKG_CONFIG) --libs libprotobuf-c 2>/dev/null || echo -lprotobuf-c)
EVENT_LIBS := $(shell $(PKG_CONFIG) --libs libevent 2>/dev/null || echo -levent)
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)
TEST_CFLAGS  := $(STD) $(WARN) $(CFLAGS) $(SAN_FLAGS) $(CHECK_CFLAGS) -Wno-missing-prototypes
# Tests of interposed calls (read, ...) know when the library does not interpose.
ifneq ($(SANITIZER),)
TEST_CFLAGS += -DMESH_NO_INTERPOSE
endif
TEST_LIBS    := $(CHECK_LIBS) $(PROTOBUF_LIBS) -lpthread
# Tests that rely on the shim's interposed names (malloc, sigaction...) skip what needs them.
ifneq ($(SANITIZER),)
TEST_CFLAGS += -DMESH_NO_INTERPOSE
endif

# Protocol: mesh.proto is compiled by protoc-c into $(BUILD)/gen (never committed).
PROTOC_C  ?= protoc-c
GEN       := $(BUILD)/gen
PROTO_OBJS := $(BUILD)/proto/mesh.pb-c.o $(BUILD)/proto/frame.o

SHIM_SRCS := $(wildcard shim/*.c)
SHIM_OBJS := $(SHIM_SRCS:shim/%.c=$(BUILD)/shim/%.o)
# meshd/ctl_*.c and meshd/meshctl.c make meshctl; the rest of meshd/ makes meshd.
MESHCTL_SRCS := $(wildcard meshd/meshctl.c meshd/ctl_*.c)
MESHD_SRCS := $(filter-out $(MESHCTL_SRCS),$(wildcard meshd/*.c))
# Objects go to $(BUILD)/daemon: $(BUILD)/meshd is the daemon itself.
MESHD_OBJS := $(MESHD_SRCS:meshd/%.c=$(BUILD)/daemon/%.o)
MESHCTL_OBJS := $(MESHCTL_SRCS:meshd/%.c=$(BUILD)/daemon/%.o)
DAEMON_CFLAGS := $(STD) $(WARN) $(CFLAGS) $(SAN_FLAGS) -I$(GEN) -Imeshd
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
PROG_SRCS := $(wildcard tests/prog/*.c)
# Libraries the tests preload beside the shim (tests/prog/preload/NAME.c -> libNAME.so).
PROG_PRELOAD_SRCS := $(wildcard tests/prog/preload/*.c)
PROG_BINS := $(PROG_SRCS:tests/prog/%.c=$(BUILD)/tests/prog/%) \
	$(PROG_PRELOAD_SRCS:tests/prog/preload/%.c=$(BUILD)/tests/prog/lib%.so)

.PHONY: all deps test test-all demo-run unit-test preload-test integration-test cpython-test bench bench-frag demo install fuzz fuzz-test clean
all: $(BUILD)/libmesh.so $(BUILD)/libmesh.a $(if $(MESHD_SRCS),$(BUILD)/meshd) $(if $(MESHCTL_SRCS),$(BUILD)/meshctl)

$(GEN)/mesh.pb-c.c $(GEN)/mesh.pb-c.h &: proto/mesh.proto
	@mkdir -p $(GEN)
	$(PROTOC_C) --c_out=$(GEN) -Iproto proto/mesh.proto

# Generated code is compiled without our warning set; frame.c is ours and gets it.
$(BUILD)/proto/mesh.pb-c.o: $(GEN)/mesh.pb-c.c
	@mkdir -p $(@D)
	$(CC) -std=c11 $(CFLAGS) $(SAN_FLAGS) -fPIC -fvisibility=hidden -I$(GEN) -c $< -o $@

$(BUILD)/proto/frame.o: proto/frame.c proto/frame.h $(GEN)/mesh.pb-c.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(STD) $(WARN) $(CFLAGS) $(SAN_FLAGS) -fPIC -fvisibility=hidden -I$(GEN) -c $< -o $@

$(BUILD)/daemon/%.o: meshd/%.c $(GEN)/mesh.pb-c.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(DAEMON_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/meshd: $(MESHD_OBJS) $(PROTO_OBJS)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(EVENT_LIBS) $(PROTOBUF_LIBS) -lm

$(BUILD)/meshctl: $(MESHCTL_OBJS) $(PROTO_OBJS)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(PROTOBUF_LIBS)

$(BUILD)/shim/%.o: shim/%.c $(GEN)/mesh.pb-c.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -I$(GEN) $(SHIM_CFLAGS) -MMD -MP -c $< -o $@

# Debian's libprotobuf-c.a is not PIC: the shim links libprotobuf-c.so.1.
$(BUILD)/libmesh.so: $(SHIM_OBJS) $(PROTO_OBJS)
	$(CC) -shared $(SAN_FLAGS) -Wl,-z,now -Wl,-z,relro -Wl,--version-script=shim/exports.map \
	    -o $@ $(SHIM_OBJS) $(PROTO_OBJS) $(PROTOBUF_LIBS) -lpthread

$(BUILD)/libmesh.a: $(SHIM_OBJS) $(PROTO_OBJS)
	rm -f $@ && ar rcs $@ $(SHIM_OBJS) $(PROTO_OBJS)

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(BUILD)/libmesh.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) -Itests -MMD -MP $< -o $@ $(BUILD)/libmesh.a $(TEST_LIBS)

# Tests of meshd's pure parts link just the file they test: no libevent, no shim, no rest
# of meshd.  policy_decide.c is the policy's decision, settings.c the settings table.
MESHD_UNIT_TESTS := $(BUILD)/tests/test_policy $(BUILD)/tests/test_settings
$(BUILD)/tests/test_policy: meshd/policy_decide.c meshd/spare_cpu.c
$(BUILD)/tests/test_settings: meshd/settings.c
$(MESHD_UNIT_TESTS): $(BUILD)/tests/%: tests/%.c meshd/policy.h meshd/settings.h meshd/round_outcome.h meshd/spare_cpu.h tests/testutil.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) -Itests -Imeshd $(filter %.c,$^) -o $@ $(CHECK_LIBS) -lm

# meshd's units (budget, closer, registry, summary, mesher, planner) on their own, with
# libevent and without the shim: meshd runs under glibc's malloc.
MESHD_UNIT_SRCS := $(addprefix meshd/,budget.c closer.c log.c mesher.c planner.c registry.c summary.c)
$(BUILD)/tests/test_meshd_units: tests/test_meshd_units.c tests/testutil.h $(MESHD_UNIT_SRCS) \
		$(wildcard meshd/*.h) proto/span_table_abi.h $(GEN)/mesh.pb-c.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) -Itests -Imeshd -I$(GEN) $< $(MESHD_UNIT_SRCS) -o $@ \
	    $(EVENT_LIBS) $(TEST_LIBS)

$(BUILD)/tests/prog/%: tests/prog/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(STD) $(WARN) $(CFLAGS) -Wno-missing-prototypes $< -o $@ -lpthread $(PROG_LIBS)

$(BUILD)/tests/prog/lib%.so: tests/prog/preload/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(STD) $(WARN) $(CFLAGS) -fPIC -shared -Wno-missing-prototypes $< -o $@ -ldl

# The programs that idle while a test meshes them.
$(BUILD)/tests/prog/barrier_load $(BUILD)/tests/prog/kernel_io $(BUILD)/tests/prog/credswitch \
		$(BUILD)/tests/prog/bigheap: tests/prog/shim_poll.h
# The programs that juggle stdout while the shim works.
$(BUILD)/tests/prog/lastexit $(BUILD)/tests/prog/dirtyheap: tests/prog/juggle.h

# kernel_io drives io_uring fixed buffers through liburing (Debian's liburing-dev).
$(BUILD)/tests/prog/kernel_io: PROG_LIBS := $(shell $(PKG_CONFIG) --libs liburing 2>/dev/null || echo -luring)

# Unit tests run each binary; CK_DEFAULT_TIMEOUT bounds every test case (only a hang may
# run into it, never a loaded machine).  One case: CK_RUN_CASE=<test name> $(BUILD)/tests/test_x.
# TSan: die_after_fork=0, since fork children of the tests (and the shim's own copy-on-write
# fork) start threads after a multi-threaded fork.
unit-test: $(TEST_BINS) $(PROG_BINS) $(BUILD)/libmesh.so
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; \
	    TSAN_OPTIONS="suppressions=$(abspath tests/tsan.supp) die_after_fork=0 $$TSAN_OPTIONS" \
	    MESH_NO_MESHD=1 CK_DEFAULT_TIMEOUT=$${CK_DEFAULT_TIMEOUT:-300} $$t; done

# Real programs from Debian's packages under LD_PRELOAD; needs the unsanitized library.
preload-test: $(BUILD)/libmesh.so $(PROG_BINS)
ifeq ($(SANITIZER),)
	MESH_LIB=$(abspath $(BUILD)/libmesh.so) MESH_PROG_DIR=$(abspath $(BUILD)/tests/prog) \
	    bash tests/preload/run.sh
else
	@echo "preload suite skipped under SANITIZER=$(SANITIZER)"
endif

# Fragmentation benchmarks (Redis LRU, delete-heavy Redis, Robson, python) with RSS plots.
bench-frag: all $(PROG_BINS)
	BUILD=$(abspath $(BUILD)) bash bench/frag/run.sh

# Fuzzing (needs clang with libFuzzer: Debian's clang, libclang-rt-14-dev).  Each target's
# seeds are in tests/fuzz/seeds/<target>/; the corpus grows in $(BUILD)/fuzz/corpus/<target>.
#   fuzz_frame         the frame decoder, on hostile bytes (both peers)
#   fuzz_span_table    meshd's span-table reader: registry.c + mesher.c, no libevent
#   fuzz_mesh_request  the shim's MeshRequest handling (control.c) on a live heap
# make fuzz runs each for FUZZ_SECONDS; make fuzz-test (part of make test) for
# FUZZ_TEST_SECONDS from the seeds, and fails on any crash, leak or timeout.  A unit may take
# FUZZ_UNIT_SECONDS (make fuzz: slow inputs are findings) or FUZZ_TEST_UNIT_SECONDS (make
# test: only a hang, never a loaded machine, may run into it).
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 600
FUZZ_TEST_SECONDS ?= 20
FUZZ_UNIT_SECONDS ?= 30
FUZZ_TEST_UNIT_SECONDS ?= 300
FUZZ_FLAGS := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_OBJ_FLAGS := $(subst fuzzer,fuzzer-no-link,$(FUZZ_FLAGS))
FUZZ_TARGETS := fuzz_frame fuzz_span_table fuzz_mesh_request
FUZZ_BINS := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)
FUZZ_SHIM_OBJS := $(filter-out $(BUILD)/fuzz/shim/control.o,$(SHIM_SRCS:shim/%.c=$(BUILD)/fuzz/shim/%.o))

$(BUILD)/fuzz/fuzz_frame: tests/fuzz/fuzz_frame.c proto/frame.c $(GEN)/mesh.pb-c.c proto/frame.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Iproto -I$(GEN) $(filter %.c,$^) -o $@ $(PROTOBUF_LIBS)

$(BUILD)/fuzz/fuzz_span_table: tests/fuzz/fuzz_span_table.c meshd/registry.c meshd/mesher.c \
		meshd/registry.h meshd/mesher.h proto/span_table_abi.h shim/rng.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(STD) -Iproto -Ishim -Imeshd $(filter %.c,$^) -o $@

# The shim built as the sanitized builds are (mesh_* names, no interposition), with coverage.
$(BUILD)/fuzz/shim/%.o: shim/%.c $(GEN)/mesh.pb-c.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -I$(GEN) $(STD) $(FUZZ_OBJ_FLAGS) -DMESH_NO_INTERPOSE -ftls-model=initial-exec \
	    -fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc -fno-builtin-realloc -MMD -MP -c $< -o $@

# control.c is #included by the harness (its decode path is static).
$(BUILD)/fuzz/fuzz_mesh_request: tests/fuzz/fuzz_mesh_request.c shim/control.c $(FUZZ_SHIM_OBJS) \
		proto/frame.c $(GEN)/mesh.pb-c.c $(wildcard shim/*.h proto/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -I$(GEN) $(STD) $(FUZZ_FLAGS) -DMESH_NO_INTERPOSE -ftls-model=initial-exec \
	    $< $(FUZZ_SHIM_OBJS) proto/frame.c $(GEN)/mesh.pb-c.c -o $@ $(PROTOBUF_LIBS) -lpthread

# fuzz_run SECONDS UNIT_SECONDS: every target from its seeds and its corpus, for SECONDS
# each, a unit bounded by UNIT_SECONDS; stops at the first failure.
define fuzz_run
	@set -e; for t in $(FUZZ_TARGETS); do echo "== fuzz $$t ($(1) s)"; \
	    mkdir -p $(BUILD)/fuzz/corpus/$$t $(BUILD)/fuzz/artifacts; \
	    MESH_NO_MESHD=1 $(BUILD)/fuzz/$$t -max_total_time=$(1) -max_len=40000 -timeout=$(2) \
	        -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/artifacts/$$t- \
	        $(BUILD)/fuzz/corpus/$$t tests/fuzz/seeds/$$t 2>$(BUILD)/fuzz/$$t.log \
	        || { tail -60 $(BUILD)/fuzz/$$t.log; exit 1; }; \
	    grep -E '^stat::(number_of_executed_units|new_units_added)' $(BUILD)/fuzz/$$t.log; done
endef

fuzz: $(FUZZ_BINS)
	$(call fuzz_run,$(FUZZ_SECONDS),$(FUZZ_UNIT_SECONDS))

# Part of make test; the fuzz builds are sanitized already, so not again under SANITIZER=.
ifeq ($(SANITIZER)$(shell command -v $(FUZZ_CC) >/dev/null || echo none),)
fuzz-test: $(FUZZ_BINS)
	$(call fuzz_run,$(FUZZ_TEST_SECONDS),$(FUZZ_TEST_UNIT_SECONDS))
else
fuzz-test:
	@echo "fuzz-test skipped (SANITIZER=$(SANITIZER), or no $(FUZZ_CC))"
endif

# Integration tests: a private meshd on a private socket, programs under the shim.  Under
# SANITIZER, meshd and meshctl are the sanitized ones (the privileged daemon against hostile
# clients is what these tests exercise), and the programs preload the unsanitized shim of a
# plain build (PLAIN_BUILD): a sanitized shim interposes nothing (-DMESH_NO_INTERPOSE).
PLAIN_BUILD ?= build
ifeq ($(SANITIZER),)
INTEGRATION_LIB := $(abspath $(BUILD)/libmesh.so)
else
INTEGRATION_LIB := $(abspath $(PLAIN_BUILD)/libmesh.so)
endif
integration-test: all $(PROG_BINS)
ifneq ($(SANITIZER),)
	@$(MAKE) --no-print-directory SANITIZER= BUILD=$(PLAIN_BUILD) $(PLAIN_BUILD)/libmesh.so
endif
	@set -e; for t in $(filter-out tests/integration/lib.sh,$(wildcard tests/integration/*.sh)); do echo "== $$t"; \
	    BUILD=$(abspath $(BUILD)) MESH_LIB=$(INTEGRATION_LIB) SANITIZER=$(SANITIZER) bash $$t; done

# CPython's own tests (Debian's libpython3.11-testsuite) under glibc, under the shim and
# under the shim with a private meshd meshing them; run.sh says SKIPPED without the package.
cpython-test: all
ifeq ($(SANITIZER),)
	BUILD=$(abspath $(BUILD)) bash tests/cpython/run.sh
else
	@echo "cpython-test SKIPPED under SANITIZER=$(SANITIZER): it needs the preloadable library"
endif

# The setup step of make test and make demo (scripts/deps.sh): installs the missing packages
# of .ci/packages as root, or prints the command and fails; one dpkg-query when all are there.
deps:
	@sh scripts/deps.sh

# make test and make demo check the packages first, then run in a new make: the pkg-config
# flags above are read when the Makefile is, so only after the packages are there.
test: deps
	@$(MAKE) --no-print-directory test-all

demo: deps
	@$(MAKE) --no-print-directory demo-run

# CPython's tests and the fuzzers run last, one after the other: under make -j2 beside the
# other tests they would load the machine those tests run on.
test-all: unit-test preload-test integration-test
	@$(MAKE) --no-print-directory cpython-test
	@$(MAKE) --no-print-directory fuzz-test

bench: all $(PROG_BINS) $(BUILD)/bench/mesh_pause $(BUILD)/bench/summary_cost
	MESH_LIB=$(abspath $(BUILD)/libmesh.so) BUILD=$(abspath $(BUILD)) bash bench/run.sh
	@echo; echo "### Mesh barrier pauses"; $(BUILD)/bench/mesh_pause | tee $(BUILD)/bench/mesh_pause.md
	@echo; $(BUILD)/bench/mesh_pause 8192 256 runs | tee -a $(BUILD)/bench/mesh_pause.md
	@echo; $(BUILD)/bench/mesh_pause 8192 256 scattered | tee -a $(BUILD)/bench/mesh_pause.md
	@echo; echo "### meshd costs"; BUILD=$(abspath $(BUILD)) bash bench/meshd/meshd_bench.sh | tee $(BUILD)/bench/meshd.md
	@echo; echo "### meshd's summary of a table by heap size"; $(BUILD)/bench/summary_cost 100 1024 16384 | tee $(BUILD)/bench/summary_cost.md

# meshd's summary (summary.c) on synthetic tables, linked like test_meshd_units.
$(BUILD)/bench/summary_cost: bench/meshd/summary_cost.c $(MESHD_UNIT_SRCS) $(wildcard meshd/*.h) \
		proto/span_table_abi.h $(GEN)/mesh.pb-c.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(STD) $(WARN) $(CFLAGS) -Wno-missing-prototypes -Imeshd -I$(GEN) $< \
	    $(MESHD_UNIT_SRCS) -o $@ $(EVENT_LIBS) $(PROTOBUF_LIBS) -lm

$(BUILD)/bench/mesh_pause: bench/meshpause/mesh_pause.c $(BUILD)/libmesh.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(STD) $(WARN) $(CFLAGS) $< -o $@ $(BUILD)/libmesh.a $(PROTOBUF_LIBS) -lpthread

# The main job: a private meshd, programs under the shim, stats before and after meshing.
demo-run: all $(BUILD)/tests/prog/fragmenter
	@BUILD=$(abspath $(BUILD)) bash meshd/demo.sh

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/meshd $(BUILD)/meshctl $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/doc/libmesh
	sed 's|/usr/local/|$(PREFIX)/|g' systemd/meshd.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/meshd.service
	install -m 0644 systemd/meshd.socket $(DESTDIR)$(PREFIX)/lib/systemd/system/meshd.socket
	install -d $(DESTDIR)$(PREFIX)/lib/sysctl.d
	install -m 0644 systemd/60-libmesh.conf $(DESTDIR)$(PREFIX)/lib/sysctl.d/60-libmesh.conf
	install -d $(DESTDIR)$(PREFIX)/lib/udev/rules.d $(DESTDIR)$(PREFIX)/lib/sysusers.d
	install -m 0644 systemd/60-libmesh-userfaultfd.rules $(DESTDIR)$(PREFIX)/lib/udev/rules.d/60-libmesh-userfaultfd.rules
	install -m 0644 systemd/libmesh-userfaultfd.conf $(DESTDIR)$(PREFIX)/lib/sysusers.d/libmesh-userfaultfd.conf
	sed 's|/usr/local/|$(PREFIX)/|g' systemd/example-preload.conf > $(DESTDIR)$(PREFIX)/share/doc/libmesh/example-preload.conf
	sed 's|/usr/local/|$(PREFIX)/|g' systemd/meshd-metrics.conf > $(DESTDIR)$(PREFIX)/share/doc/libmesh/meshd-metrics.conf
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/libmesh/
	install -d $(DESTDIR)$(PREFIX)/share/man/man7 $(DESTDIR)$(PREFIX)/share/man/man8
	for m in meshd.8 meshctl.8 libmesh.7; do \
	    sed 's|/usr/local/|$(PREFIX)/|g' docs/man/$$m > $(DESTDIR)$(PREFIX)/share/man/man$${m##*.}/$$m; done
	install -m 0755 $(BUILD)/libmesh.so $(DESTDIR)$(LIBDIR)/libmesh.so
	install -m 0644 shim/mesh.h $(DESTDIR)$(INCLUDEDIR)/mesh.h

clean:
	rm -rf build

-include $(FUZZ_SHIM_OBJS:.o=.d) $(SHIM_OBJS:.o=.d) $(TEST_BINS:=.d) $(MESHD_OBJS:.o=.d) $(MESHCTL_OBJS:.o=.d)
