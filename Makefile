# libcachekit: plain GNU make build (in the manner of hiredis's Makefile).
#
#   make                    libcachekit.a, libcachekit.so.<soversion> (+ .so link)
#                           in build/, and pkgconfig/cachekit.pc
#   make check              Debian packages check, build, run every tests/check_* and
#                           a smoke run of every example (tests/examples.sh)
#                           against a private redis-server (TESTS=check_url to filter)
#   make check SANITIZE=1   the same under ASan + UBSan, built in build-asan/
#   make check-acl          the suites with the library connected as an ACL user
#                           allowed exactly tests/acl-commands (tests/run-acl.sh)
#   make valgrind           the same test binaries under valgrind
#   make fuzz [FUZZ_SECONDS=60]  libFuzzer harnesses of tests/fuzz/ (clang), in build-fuzz/
#   make tsan               the threaded suites under ThreadSanitizer, in build-tsan/
#   make soak [SOAK_SECONDS=60]  16 threads against a private redis-server under
#                           injected faults, with invariant checkers (SANITIZE=1 ok)
#   make bench              build and run tests/bench/*.c against a private redis
#   make examples           build examples/*.c into build/examples/
#   make demo               run examples/token_gateway against a throwaway redis-server,
#                           stopping and restarting it mid-run (scripts/demo.sh)
#   make install PREFIX=/usr/local DESTDIR=     make uninstall     make clean
#   make deps               install (as root) or name the missing Debian packages
#
# Variables: WERROR=1 (add -Werror), SANITIZE=1, V=1 (show commands), CC, CFLAGS,
# CPPFLAGS, LDFLAGS, OPTIMIZATION (-O2), PREFIX, DESTDIR, TESTS.

VERSION_H := include/cachekit/version.h
MAJOR := $(shell awk '/^\#define CK_VERSION_MAJOR /{print $$3}' $(VERSION_H))
MINOR := $(shell awk '/^\#define CK_VERSION_MINOR /{print $$3}' $(VERSION_H))
PATCH := $(shell awk '/^\#define CK_VERSION_PATCH /{print $$3}' $(VERSION_H))
ifeq ($(strip $(MAJOR)),)
$(error cannot read CK_VERSION_MAJOR from $(VERSION_H))
endif
VERSION := $(MAJOR).$(MINOR).$(PATCH)
# While the version is 0.x the ABI may change with every minor release
# (caller-sized structs), so the soname carries 0.<minor> (as libgit2 does).
ifeq ($(MAJOR),0)
SOVERSION := $(MAJOR).$(MINOR)
else
SOVERSION := $(MAJOR)
endif

LIBNAME := libcachekit
STLIBNAME := $(LIBNAME).a
DYLIBNAME := $(LIBNAME).so
SONAME := $(DYLIBNAME).$(SOVERSION)

PREFIX ?= /usr/local
INCLUDEDIR = $(PREFIX)/include
LIBDIR = $(PREFIX)/lib
PKGCONFIGDIR = $(LIBDIR)/pkgconfig
INSTALL ?= install

ifeq ($(SANITIZE),1)
B := build-asan
OPTIMIZATION ?= -O1
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
NO_UNDEFINED :=
else
B := build
OPTIMIZATION ?= -O2
SAN_FLAGS :=
NO_UNDEFINED := -Wl,-z,defs
endif

ifeq ($(V),1)
Q :=
say := @true
else
Q := @
say := @printf '  %-8s %s\n'
endif

# pkg-config answers are computed on first use only (lazily, once), so that
# `make deps` and `make check` on a machine without the packages get as far
# as installing them instead of failing while the Makefile is read.
pc = $(if $(shell pkg-config --exists $(2) 2>/dev/null && echo y),$(shell pkg-config $(1) $(2)),$(error pkg-config cannot find '$(2)': run 'make deps'))
DEP_CFLAGS = $(eval DEP_CFLAGS := $(call pc,--cflags,hiredis jansson libcrypto))$(DEP_CFLAGS)
DEP_LIBS = $(eval DEP_LIBS := $(call pc,--libs,hiredis jansson libcrypto) -pthread)$(DEP_LIBS)
CHECK_CFLAGS = $(eval CHECK_CFLAGS := $(call pc,--cflags,check))$(CHECK_CFLAGS)
CHECK_LIBS = $(eval CHECK_LIBS := $(call pc,--libs,check))$(CHECK_LIBS)
SQLITE_LIBS = $(eval SQLITE_LIBS := $(call pc,--libs,sqlite3))$(SQLITE_LIBS)

WARNINGS := -Wall -Wextra -Wpedantic -Wstrict-prototypes -Wwrite-strings
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif
DEBUG_FLAGS ?= -g
# POSIX 2008 + the BSD/GNU bits the code uses (MSG_NOSIGNAL, clock_gettime, pthreads).
CK_CPPFLAGS = -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude -Ilib $(DEP_CFLAGS)
CK_CFLAGS = -std=c11 $(OPTIMIZATION) $(DEBUG_FLAGS) $(WARNINGS) $(SAN_FLAGS)
LIB_CFLAGS = -fPIC -fvisibility=hidden
ALL_CFLAGS = $(CK_CPPFLAGS) $(CPPFLAGS) $(CK_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)

LIB_SRC := $(sort $(wildcard lib/*.c))
LIB_OBJ := $(patsubst lib/%.c,$(B)/obj/%.o,$(LIB_SRC))

ALL_TESTS := $(sort $(patsubst tests/%.c,%,$(wildcard tests/check_*.c)))
ifneq ($(strip $(TESTS)),)
SELECTED_TESTS := $(filter $(TESTS) $(addprefix check_,$(TESTS)),$(ALL_TESTS))
else
SELECTED_TESTS := $(ALL_TESTS)
endif
TEST_BINS := $(addprefix $(B)/tests/,$(SELECTED_TESTS))
# The examples' smoke run (tests/examples.sh): with every suite, or TESTS=examples.
EXAMPLES_SMOKE := $(if $(strip $(TESTS)),$(filter examples,$(TESTS)),examples)
TEST_SUPPORT_OBJ := $(patsubst tests/%.c,$(B)/tests/obj/%.o,$(sort $(wildcard tests/ckt_*.c)))

BENCH_BINS := $(patsubst tests/bench/%.c,$(B)/bench/%,$(sort $(wildcard tests/bench/*.c)))
EXAMPLE_BINS := $(patsubst examples/%.c,$(B)/examples/%,$(sort $(wildcard examples/*.c)))
# Examples that include <sqlite3.h> also link sqlite3.
SQLITE_EXAMPLES := $(patsubst examples/%.c,$(B)/examples/%,$(shell grep -l '<sqlite3.h>' examples/*.c 2>/dev/null))

PUBLIC_HEADERS := include/cachekit.h $(sort $(wildcard include/cachekit/*.h))
DEPS_SH := sh scripts/deps.sh

.PHONY: all lib deps check check-acl check-build check-headers run-tests valgrind bench bench-build examples \
	demo install uninstall clean FORCE
.DEFAULT_GOAL := all

all: $(B)/$(STLIBNAME) $(B)/$(SONAME) $(B)/$(DYLIBNAME) pkgconfig/cachekit.pc
lib: all

# ---- flags stamp: objects are rebuilt when the compiler or its flags change
$(B)/.flags: FORCE
	@mkdir -p $(@D)
	@f='$(CC) $(ALL_CFLAGS) $(LIB_CFLAGS) $(ALL_LDFLAGS)'; \
	if [ "$$f" != "$$(cat $@ 2>/dev/null)" ]; then echo "$$f" > $@; fi

# ---- the library
$(B)/obj/%.o: lib/%.c $(B)/.flags
	@mkdir -p $(@D)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) $(LIB_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/$(STLIBNAME): $(LIB_OBJ)
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(B)/$(SONAME): $(LIB_OBJ)
	$(say) LD $@
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) $(NO_UNDEFINED) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(B)/$(DYLIBNAME): $(B)/$(SONAME)
	$(Q)ln -sf $(SONAME) $@

# Regenerated on every make, but rewritten only when PREFIX or the version
# changed, so `make install PREFIX=/usr` installs a matching file.
pkgconfig/cachekit.pc: pkgconfig/cachekit.pc.in FORCE
	@sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; echo "  GEN      $@ (prefix $(PREFIX))"; fi

# ---- tests: one binary per tests/check_<name>.c, linked with the tests/ckt_*.c
# support files and the STATIC library (so they reach ck__ internals)
$(B)/tests/obj/%.o: tests/%.c $(B)/.flags
	@mkdir -p $(@D)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) -Itests $(CHECK_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/tests/check_%: $(B)/tests/obj/check_%.o $(TEST_SUPPORT_OBJ) $(B)/$(STLIBNAME)
	$(say) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(B)/$(STLIBNAME) $(CHECK_LIBS) $(DEP_LIBS)

# Each public header compiles alone, as C11 (pedantic) and as C++.
$(B)/headers/%.ok: include/%.h $(B)/.flags
	@mkdir -p $(@D)
	$(say) HDR $<
	$(Q)printf '#include <%s>\nint ck_header_test_dummy;\n' '$*.h' | \
		$(CC) -std=c11 -Wall -Wextra -Wpedantic -Werror -Iinclude $(DEP_CFLAGS) -x c -fsyntax-only -
	$(Q)if command -v $(CXX) >/dev/null 2>&1; then \
		printf '#include <%s>\nint ck_header_test_dummy;\n' '$*.h' | \
		$(CXX) -Wall -Wextra -Werror -Iinclude $(DEP_CFLAGS) -x c++ -fsyntax-only -; fi
	@touch $@

check-headers: $(patsubst include/%.h,$(B)/headers/%.ok,$(PUBLIC_HEADERS))

check-build: all check-headers $(TEST_BINS) $(if $(EXAMPLES_SMOKE),$(EXAMPLE_BINS))

ifeq ($(SANITIZE),1)
RUN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:$(ASAN_OPTIONS) \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:$(UBSAN_OPTIONS) \
	CACHEKIT_TEST_SANITIZE=1 CK_TIMEOUT_MULTIPLIER=$(or $(CK_TIMEOUT_MULTIPLIER),3)
else
RUN_ENV :=
endif

# tests/exports.sh on the shared library, tests/docs.py (docs/api.md is the
# headers' doc comments; the docs' C blocks compile), then (whatever they
# said) the suites, whose "N passed, N failed" stays the last line.
run-tests:
ifeq ($(strip $(SELECTED_TESTS) $(EXAMPLES_SMOKE)),)
	@echo "no test to run: TESTS='$(TESTS)', tests/check_*.c: $(or $(ALL_TESTS),none)"; exit 1
else
	$(Q)rc=0; \
	if [ -f tests/exports.sh ]; then \
		echo "=== exports.sh $(B)/$(SONAME)"; \
		CACHEKIT_SHLIB=$(B)/$(SONAME) sh tests/exports.sh $(B)/$(SONAME) || rc=1; \
	fi; \
	echo "=== docs.py (docs/api.md, doc comments, the docs' C snippets)"; \
	CC="$(CC)" CFLAGS_EXTRA="$(DEP_CFLAGS)" python3 tests/docs.py || rc=1; \
	$(RUN_ENV) CACHEKIT_EXAMPLES_DIR=$(B)/examples \
		tests/run-with-redis.sh $(TEST_BINS) $(if $(EXAMPLES_SMOKE),tests/examples.sh) || rc=1; \
	exit $$rc
endif

# Sub-makes run in sequence: deps first, then a fresh make that can ask
# pkg-config, then the run.
check:
	$(Q)$(DEPS_SH)
	$(Q)$(MAKE) --no-print-directory check-build
	$(Q)$(MAKE) --no-print-directory run-tests

# The least-privilege run: the same binaries, the library connected as a user
# allowed only the commands of tests/acl-commands (docs/security.md).
check-acl:
	$(Q)$(DEPS_SH)
	$(Q)$(MAKE) --no-print-directory check-build
	$(Q)$(RUN_ENV) CACHEKIT_EXAMPLES_DIR=$(B)/examples \
		tests/run-acl.sh $(TEST_BINS) $(if $(EXAMPLES_SMOKE),tests/examples.sh)

# --fair-sched=yes: valgrind runs one thread at a time, and its default lock
# lets a busy thread keep it for tens of seconds (check_faults' eight spinning
# callers starved the main thread past the 900 s test timeout).
valgrind:
ifeq ($(SANITIZE),1)
	$(error make valgrind does not combine with SANITIZE=1)
endif
	$(Q)$(DEPS_SH) valgrind
	$(Q)$(MAKE) --no-print-directory check-build
	$(Q)CK_FORK=no CK_TIMEOUT_MULTIPLIER=$(or $(CK_TIMEOUT_MULTIPLIER),10) CACHEKIT_TEST_VALGRIND=1 \
	CACHEKIT_TEST_WRAPPER="valgrind -q --fair-sched=yes --leak-check=full --error-exitcode=1 --track-origins=yes $(VALGRIND_FLAGS)" \
		tests/run-with-redis.sh $(TEST_BINS)

# ---- fuzzing and ThreadSanitizer ------------------------------------------
#   make fuzz [FUZZ_SECONDS=60] [FUZZERS="url codec"]
#       builds tests/fuzz/fuzz_<name>.c with clang (-fsanitize=fuzzer,address,
#       undefined) against the library compiled the same way, in build-fuzz/,
#       runs each for FUZZ_SECONDS (seeds: tests/fuzz/corpus/<name>/, read only;
#       new inputs and crash artifacts stay in build-fuzz/) and prints a table
#       of executions and crashes; exit 1 if any harness crashed.
#   make fuzz-build         only build them
#   make tsan [TSAN_TESTS="check_lock ..."]
#       the threaded suites built with -fsanitize=thread in build-tsan/ and run
#       against a private redis-server; any report fails the run.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_B := build-fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_ALL := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_NAMES := $(if $(strip $(FUZZERS)),$(filter $(FUZZERS),$(FUZZ_ALL)),$(FUZZ_ALL))
FUZZ_BINS := $(addprefix $(FUZZ_B)/fuzz_,$(FUZZ_NAMES))
TSAN_B := build-tsan
TSAN_TESTS ?= check_pool check_faults check_lock check_cache check_l1 check_rate check_slots check_client
# tests/tsan/jansson.h: jansson's json_decref with an acquire (see there)
TSAN_SAN := -fsanitize=thread -fno-omit-frame-pointer -I$(CURDIR)/tests/tsan

.PHONY: fuzz fuzz-build fuzz-bins tsan tsan-build tsan-bins

fuzz-build:
	$(Q)$(DEPS_SH) clang libclang-rt-dev
	@test -n "$(FUZZ_NAMES)" || { echo "fuzz: no harness matches FUZZERS='$(FUZZERS)' (have: $(FUZZ_ALL))"; exit 1; }
	$(Q)$(MAKE) --no-print-directory B=$(FUZZ_B) CC=$(FUZZ_CC) OPTIMIZATION=-O1 NO_UNDEFINED= \
		SAN_FLAGS='$(FUZZ_SAN) -fsanitize=fuzzer-no-link' fuzz-bins

fuzz-bins: $(FUZZ_BINS)

$(FUZZ_B)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_B)/$(STLIBNAME) $(FUZZ_B)/.flags
	$(say) FUZZ $<
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/fuzz -fsanitize=fuzzer $(ALL_LDFLAGS) -o $@ $< \
		$(FUZZ_B)/$(STLIBNAME) $(DEP_LIBS)

fuzz: fuzz-build
	$(Q)sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_B) $(FUZZ_NAMES)

tsan-build:
	$(Q)$(DEPS_SH) $(if $(filter clang%,$(notdir $(CC))),libclang-rt-dev,libtsan2)
	$(Q)$(MAKE) --no-print-directory B=$(TSAN_B) OPTIMIZATION=-O1 NO_UNDEFINED= \
		SAN_FLAGS='$(TSAN_SAN)' TESTS='$(TSAN_TESTS)' tsan-bins

tsan-bins: $(TEST_BINS)

# halt_on_error: the first race fails its suite (run-with-redis.sh reports it).
tsan: tsan-build
	$(Q)TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 $(TSAN_OPTIONS)" \
	CACHEKIT_TEST_TSAN=1 CK_TIMEOUT_MULTIPLIER=$(or $(CK_TIMEOUT_MULTIPLIER),5) \
		tests/run-with-redis.sh $(addprefix $(TSAN_B)/tests/,$(filter $(TSAN_TESTS),$(ALL_TESTS)))

# ---- soak: tests/soak/soak.c against its own redis-server (started and
# stopped by the soak itself), with a nemesis cycling faults; prints a table
# and exits 1 on any checker violation. SANITIZE=1 builds it with ASan+UBSan.
SOAK_SECONDS ?= 60
.PHONY: soak soak-build

# tests/ckt_spawn.c: the check suites' way to start redis-server, without check
$(B)/soak/soak: tests/soak/soak.c tests/ckt_spawn.c tests/ckt_spawn.h $(B)/$(STLIBNAME) $(B)/.flags
	@mkdir -p $(@D)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< tests/ckt_spawn.c $(B)/$(STLIBNAME) $(DEP_LIBS)

soak-build:
	$(Q)$(DEPS_SH)
	$(Q)$(MAKE) --no-print-directory $(B)/soak/soak

soak: soak-build
	$(Q)$(RUN_ENV) SOAK_SANITIZE=$(if $(filter 1,$(SANITIZE)),1,0) $(B)/soak/soak $(SOAK_SECONDS)

deps:
	$(Q)$(DEPS_SH) -v

# ---- benchmarks: tests/bench/<name>.c -> build/bench/<name>
$(B)/bench/%: tests/bench/%.c $(B)/$(STLIBNAME) $(B)/.flags
	@mkdir -p $(@D)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) -Itests $(ALL_LDFLAGS) -o $@ $< $(B)/$(STLIBNAME) $(DEP_LIBS)

bench-build: $(BENCH_BINS)

bench: bench-build
ifeq ($(strip $(BENCH_BINS)),)
	@echo "bench: no benchmarks in tests/bench/*.c yet"
else
	$(Q)tests/run-with-redis.sh $(BENCH_BINS)
endif

# ---- examples: examples/<name>.c -> build/examples/<name>, static library
$(B)/examples/%: examples/%.c $(B)/$(STLIBNAME) $(B)/.flags
	@mkdir -p $(@D)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(B)/$(STLIBNAME) \
		$(if $(filter $@,$(SQLITE_EXAMPLES)),$(SQLITE_LIBS)) $(DEP_LIBS)

examples: $(EXAMPLE_BINS)

demo:
	$(Q)$(DEPS_SH)
	$(Q)$(MAKE) --no-print-directory $(B)/examples/token_gateway
	$(Q)scripts/demo.sh $(B)/examples/token_gateway

# ---- install
install: all
	$(INSTALL) -d $(DESTDIR)$(INCLUDEDIR)/cachekit $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 644 include/cachekit.h $(DESTDIR)$(INCLUDEDIR)/
	$(INSTALL) -m 644 $(wildcard include/cachekit/*.h) $(DESTDIR)$(INCLUDEDIR)/cachekit/
	$(INSTALL) -m 644 $(B)/$(STLIBNAME) $(DESTDIR)$(LIBDIR)/
	$(INSTALL) -m 755 $(B)/$(SONAME) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/$(DYLIBNAME)
	$(INSTALL) -m 644 pkgconfig/cachekit.pc $(DESTDIR)$(PKGCONFIGDIR)/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/cachekit.h
	rm -f $(patsubst include/%,$(DESTDIR)$(INCLUDEDIR)/%,$(wildcard include/cachekit/*.h))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/cachekit 2>/dev/null
	rm -f $(DESTDIR)$(LIBDIR)/$(STLIBNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/$(DYLIBNAME)
	rm -f $(DESTDIR)$(PKGCONFIGDIR)/cachekit.pc

clean:
	rm -rf build build-asan build-meson build-fuzz build-tsan pkgconfig/cachekit.pc pkgconfig/cachekit.pc.tmp

FORCE:

# Objects made through pattern-rule chains are kept (no rebuilds, no deletions).
.SECONDARY:

-include $(wildcard $(B)/obj/*.d $(B)/tests/obj/*.d)
