# ratectl - one rate limit shared by every process on a host.
# Plain make; see README.md.  Outputs go to build/ (or $(B)).

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# The Python package (lib/python/ratectl) goes where Debian's python3 looks:
# /usr/lib/python3/dist-packages for PREFIX=/usr, else
# PREFIX/lib/python3.X/dist-packages (on sys.path for /usr/local).
PYTHON ?= /usr/bin/python3
PYTHONDIR ?= $(shell $(PYTHON) -c 'import sys, sysconfig; p = "$(PREFIX)"; \
  deb = "deb_system" in sysconfig.get_scheme_names(); \
  print(sysconfig.get_path("purelib", "deb_system", vars={"base": p}) if deb and p == "/usr" \
    else "%s/lib/python%d.%d/%s" % (p, sys.version_info[0], sys.version_info[1], \
    "dist-packages" if deb else "site-packages"))')
PY_SRC := $(wildcard lib/python/ratectl/*.py)
# The Node package (lib/node), addon included, for `npm install DIR`.
NODEDIR ?= $(PREFIX)/lib/node_modules

B ?= build
CC ?= cc
OPT ?= -O2 -g
WARN = -Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wshadow -Werror
CFLAGS ?=
CPPFLAGS += -D_GNU_SOURCE -Iinclude
ALL_CFLAGS = -std=c11 $(OPT) $(WARN) -fPIC -pthread $(CFLAGS)

# Version from the header, for the soname.
VMAJ := $(shell sed -n 's/^\#define RATECTL_VERSION_MAJOR //p' include/ratectl.h)
VMIN := $(shell sed -n 's/^\#define RATECTL_VERSION_MINOR //p' include/ratectl.h)
VPAT := $(shell sed -n 's/^\#define RATECTL_VERSION_PATCH //p' include/ratectl.h)
VERSION := $(VMAJ).$(VMIN).$(VPAT)
SONAME := libratectl.so.$(VMAJ)

LIB_LIBS = -llmdb -lhiredis -pthread
LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)

# libratectl-http: the HTTP policy (include/ratectl_http.h), over libratectl.
HVMAJ := $(shell sed -n 's/^\#define RATECTL_HTTP_VERSION_MAJOR //p' include/ratectl_http.h)
HVMIN := $(shell sed -n 's/^\#define RATECTL_HTTP_VERSION_MINOR //p' include/ratectl_http.h)
HVPAT := $(shell sed -n 's/^\#define RATECTL_HTTP_VERSION_PATCH //p' include/ratectl_http.h)
HVERSION := $(HVMAJ).$(HVMIN).$(HVPAT)
HSONAME := libratectl-http.so.$(HVMAJ)
HTTP_SRC := $(wildcard lib/http/*.c)
HTTP_OBJ := $(HTTP_SRC:%.c=$(B)/obj/%.o)
HTTP_SHARED = $(B)/libratectl-http.so.$(HVERSION)
HTTP_STATIC = $(B)/libratectl-http.a
HTTP_PC = $(B)/ratectl-http.pc
HTTP_LIBS = -linih -llmdb

CLI_SRC := $(wildcard tools/cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/obj/%.o)
PRELOAD_SRC := $(wildcard tools/preload/*.c)
PRELOAD_OBJ := $(PRELOAD_SRC:%.c=$(B)/obj/%.o)

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(B)/tests/%)
# Helper programs that the shell tests run (fake clients and the like).
PROG_SRC := $(wildcard tests/progs/*.c)
PROG_BIN := $(PROG_SRC:tests/progs/%.c=$(B)/progs/%)
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(B)/bench/%)

SHARED = $(B)/libratectl.so.$(VERSION)
STATIC = $(B)/libratectl.a
PC = $(B)/ratectl.pc

# The Node.js addon (lib/node): Node-API in C, built with the headers
# Node ships (/usr/include/node), no node-gyp.  It links both libraries
# statically and exports its module entry points only, so that `require`
# needs nothing else at run time.  Built with `all` when the headers are
# there; `make node` insists.
NODE_INCLUDE ?= /usr/include/node
NODE_SRC := $(wildcard lib/node/src/*.c)
NODE_OBJ := $(NODE_SRC:%.c=$(B)/obj/%.o)
NODE_ADDON = $(B)/node/ratectl.node
ifneq ($(wildcard $(NODE_INCLUDE)/node_api.h),)
NODE_ALL = $(NODE_ADDON)
endif

PROGS =
ifneq ($(CLI_SRC),)
PROGS += $(B)/ratectl
endif
ifneq ($(wildcard tools/fakeprov.c),)
PROGS += $(B)/ratectl-fakeprov
endif
ifneq ($(PRELOAD_SRC),)
PROGS += $(B)/libratectl-preload.so
endif

.PHONY: all shared static pkgconfig install uninstall test test-python check bench demo deb \
	clean deps asan ubsan tsan fuzz chaos headercheck valgrind node

all: shared static pkgconfig $(PROGS) $(NODE_ALL)

shared: $(B)/libratectl.so $(B)/libratectl-http.so
static: $(STATIC) $(HTTP_STATIC)
pkgconfig: $(PC) $(HTTP_PC)

deps:
	@tools/deps.sh build

# Tools see the public headers only, never lib/; except that the command
# reads the config file through lib/http/conf.h (statically linked) until
# ratectl_http.h grows a config API of its own.
$(B)/obj/tools/cli/%.o: CPPFLAGS += -Ilib/http

$(B)/obj/%.o: %.c include/ratectl.h include/ratectl_http.h $(wildcard lib/*.h) \
		$(wildcard lib/http/*.h) $(wildcard tools/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -c -o $@ $<

$(SHARED): $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(LIB_LIBS) $(LDFLAGS)
$(B)/$(SONAME): $(SHARED)
	ln -sf libratectl.so.$(VERSION) $@
$(B)/libratectl.so: $(B)/$(SONAME)
	ln -sf $(SONAME) $@

$(STATIC): $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

# libratectl-http exports ratectl_http_* only (lib/http/exports.map).
$(HTTP_SHARED): $(HTTP_OBJ) $(B)/libratectl.so lib/http/exports.map
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,$(HSONAME) \
	  -Wl,--version-script=lib/http/exports.map -o $@ $(HTTP_OBJ) \
	  -L$(B) -lratectl $(HTTP_LIBS) $(LIB_LIBS) $(LDFLAGS)
$(B)/$(HSONAME): $(HTTP_SHARED)
	ln -sf libratectl-http.so.$(HVERSION) $@
$(B)/libratectl-http.so: $(B)/$(HSONAME)
	ln -sf $(HSONAME) $@
$(HTTP_STATIC): $(HTTP_OBJ)
	rm -f $@
	$(AR) rcs $@ $^
# The .pc files name the install directories: made again when they change
# (`make; make install PREFIX=/usr` must not install /usr/local's).
$(B)/.dirs: FORCE
	@mkdir -p $(B)
	@echo '$(PREFIX) $(LIBDIR) $(INCDIR)' | cmp -s - $@ || echo '$(PREFIX) $(LIBDIR) $(INCDIR)' > $@
.PHONY: FORCE

$(HTTP_PC): Makefile include/ratectl_http.h $(B)/.dirs
	@mkdir -p $(B)
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	  'Name: ratectl-http' 'Description: the HTTP policy of ratectl, for any HTTP client' \
	  'Version: $(HVERSION)' 'Requires: ratectl' 'Libs: -L$${libdir} -lratectl-http' \
	  'Libs.private: -linih -llmdb' 'Cflags: -I$${includedir}' > $@

$(PC): Makefile include/ratectl.h $(B)/.dirs
	@mkdir -p $(B)
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	  'Name: ratectl' 'Description: one rate limit shared by every process on a host' \
	  'Version: $(VERSION)' 'Libs: -L$${libdir} -lratectl' 'Libs.private: -llmdb -lhiredis -pthread' \
	  'Cflags: -I$${includedir}' > $@

# Programs link the static library: they run from build/ without LD_LIBRARY_PATH.
$(B)/ratectl: $(CLI_OBJ) $(HTTP_STATIC) $(STATIC)
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(HTTP_STATIC) $(STATIC) -linih -ljansson -lmicrohttpd $(LIB_LIBS) $(LDFLAGS)
$(B)/ratectl-fakeprov: $(B)/obj/tools/fakeprov.o
	$(CC) $(ALL_CFLAGS) -o $@ $< -lmicrohttpd -ljansson -lm $(LDFLAGS)
# The shim never links libcurl: it finds the caller's at run time.  It
# exports its hooks only (tools/preload/exports.map), nothing else into
# the programs it is loaded into.
$(B)/libratectl-preload.so: $(PRELOAD_OBJ) $(HTTP_STATIC) $(STATIC) tools/preload/exports.map
	$(CC) $(ALL_CFLAGS) -shared -Wl,--version-script=tools/preload/exports.map \
	  -o $@ $(PRELOAD_OBJ) $(HTTP_STATIC) $(STATIC) -linih -ldl $(LIB_LIBS) $(LDFLAGS)

node: $(NODE_ADDON)
$(NODE_OBJ): CPPFLAGS += -I$(NODE_INCLUDE) -Ilib/node/src
$(NODE_OBJ): $(wildcard lib/node/src/*.h)
$(NODE_ADDON): $(NODE_OBJ) $(HTTP_STATIC) $(STATIC) lib/node/src/exports.map
	@test -f $(NODE_INCLUDE)/node_api.h || { echo "make node: no $(NODE_INCLUDE)/node_api.h (install Debian's nodejs, or set NODE_INCLUDE)"; exit 1; }
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -Wl,--version-script=lib/node/src/exports.map \
	  -o $@ $(NODE_OBJ) $(HTTP_STATIC) $(STATIC) $(HTTP_LIBS) $(LIB_LIBS) $(LDFLAGS)

# Tests: one cmocka binary per tests/test_<area>.c, linked with the static
# library.  Extra libraries per test: TEST_LIBS_<name>.
TEST_LIBS_test_shim = -lcurl
$(B)/tests/%: tests/%.c $(STATIC) $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(ALL_CFLAGS) -o $@ $< $(STATIC) -lcmocka $(TEST_LIBS_$*) $(LIB_LIBS) -lm $(LDFLAGS)

# The policy's tests see its internals too (lib/http), and link it whole.
HTTP_TEST_BIN := $(filter $(B)/tests/test_http%,$(TEST_BIN))
$(HTTP_TEST_BIN): $(B)/tests/%: tests/%.c $(HTTP_STATIC) $(STATIC) $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests -Ilib/http $(ALL_CFLAGS) -o $@ $< $(HTTP_STATIC) $(STATIC) -lcmocka $(HTTP_LIBS) $(LIB_LIBS) -lm $(LDFLAGS)

# The shim's pure parts and the policy's in-process (no libcurl, no
# LD_PRELOAD), so that the sanitizer builds run them.
SHIM_PURE_OBJ := $(addprefix $(B)/obj/tools/preload/,tee.o hdrs.o)
$(B)/tests/test_preload: tests/test_preload.c $(SHIM_PURE_OBJ) $(HTTP_STATIC) $(STATIC) $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests -Itools/preload -Ilib/http $(ALL_CFLAGS) -o $@ $< $(SHIM_PURE_OBJ) $(HTTP_STATIC) $(STATIC) -lcmocka $(HTTP_LIBS) $(LIB_LIBS) -lm $(LDFLAGS)

# Per-program extra libraries: PROG_LIBS_<name>.
PROG_LIBS_shim_client = -lcurl
PROG_LIBS_shim_dlopen = -ldl
# cache_fill drives libratectl-http (tests/test_cache_cli.sh); the static
# libratectl again after it, for the symbols it needs.
PROG_LIBS_cache_fill = $(HTTP_STATIC) $(STATIC) $(HTTP_LIBS)
$(B)/progs/cache_fill: $(HTTP_STATIC)
$(B)/progs/%: tests/progs/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests -Ilib/http $(ALL_CFLAGS) -o $@ $< $(STATIC) $(PROG_LIBS_$*) $(LIB_LIBS) -lm $(LDFLAGS)

BENCH_LIBS_bench_alt = -lhiredis -lsqlite3
BENCH_LIBS_bench_shim = -lcurl
BENCH_LIBS_bench_http = $(HTTP_STATIC) -linih
BENCH_LIBS_bench_cache = $(HTTP_STATIC) -linih -lcurl
$(B)/bench/%: tests/bench/%.c $(STATIC) $(HTTP_STATIC) $(wildcard tests/bench/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(ALL_CFLAGS) -o $@ $< $(BENCH_LIBS_$*) $(STATIC) $(LIB_LIBS) -lm $(LDFLAGS)

headercheck:
	@mkdir -p $(B)
	$(CC) -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only -x c include/ratectl.h
	$(CC) -std=c99 -pedantic -Wall -Wextra -Werror -Iinclude -fsyntax-only -x c include/ratectl_http.h
	$(CC) -std=c99 -pedantic -Wall -Wextra -Werror -Iinclude -c -o $(B)/headercheck.o tests/headercheck.c

test check: 
	@tools/deps.sh test
	@$(MAKE) --no-print-directory all $(TEST_BIN) $(PROG_BIN) headercheck
	@B=$(B) RATECTL_SANITIZER=$(RATECTL_SANITIZER) tests/run.sh

# The Python package's tests alone (tests/python, also part of make test).
test-python:
	@tools/deps.sh test
	@$(MAKE) --no-print-directory all
	@B=$(B) RATECTL_SANITIZER=$(RATECTL_SANITIZER) tests/run.sh python

bench:
	@tools/deps.sh bench
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@B=$(B) tests/bench/run.sh

demo:
	@tools/deps.sh test
	@$(MAKE) --no-print-directory all
	@B=$(B) tools/demo.sh

# The whole suite under a sanitizer, built into its own folder.  Tests that
# LD_PRELOAD the shim into other programs skip themselves there
# (RATECTL_SANITIZER): a sanitizer's runtime must be loaded first.
asan:
	$(MAKE) B=build/asan OPT="-O1 -g" RATECTL_SANITIZER=address \
	  CFLAGS="-fsanitize=address -fno-omit-frame-pointer" LDFLAGS="-fsanitize=address" test
ubsan:
	$(MAKE) B=build/ubsan OPT="-O1 -g" RATECTL_SANITIZER=undefined \
	  CFLAGS="-fsanitize=undefined -fno-sanitize-recover=all" LDFLAGS="-fsanitize=undefined" test
tsan:
	$(MAKE) B=build/tsan CC=clang OPT="-O1 -g" RATECTL_SANITIZER=thread \
	  CFLAGS="-fsanitize=thread" LDFLAGS="-fsanitize=thread" test

# The deterministic C unit tests under valgrind (memcheck): no invalid
# access, no leak.  (The multi-process tests assert timings valgrind breaks.)
VALGRIND_TESTS = test_gcra test_ledger test_parse
valgrind:
	@tools/deps.sh test
	@$(MAKE) --no-print-directory $(VALGRIND_TESTS:%=$(B)/tests/%)
	@for t in $(VALGRIND_TESTS); do \
	  valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
	    --child-silent-after-fork=yes -q $(B)/tests/$$t >/dev/null || { echo "valgrind: $$t failed"; exit 1; }; \
	  echo "valgrind: $$t clean"; done

# The long chaos run: CHAOS_WORKERS workers, SIGKILL at random, for
# CHAOS_SECONDS; then `ratectl check` on the ledger it leaves.
CHAOS_WORKERS ?= 16
CHAOS_SECONDS ?= 30
chaos:
	@tools/deps.sh test
	@$(MAKE) --no-print-directory all $(B)/progs/chaos
	@CHAOS_WORKERS=$(CHAOS_WORKERS) CHAOS_SECONDS=$(CHAOS_SECONDS) B=$(B) sh tests/test_chaos.sh

# libFuzzer targets (clang), each for FUZZ_SECONDS; FUZZ_TARGETS="jscan
# http_match" runs those only (default: every tests/fuzz/fuzz_*.c).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz:
	@tools/deps.sh fuzz
	@B=$(B) tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Debian packages of this tree into $(B)/deb (tools/deb/build.sh says what).
deb: all
	sh tools/deb/build.sh "$(B)"

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BINDIR)
	install -m 644 include/ratectl.h include/ratectl_http.h $(DESTDIR)$(INCDIR)/
	install -m 755 $(SHARED) $(HTTP_SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libratectl.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libratectl.so
	ln -sf libratectl-http.so.$(HVERSION) $(DESTDIR)$(LIBDIR)/$(HSONAME)
	ln -sf $(HSONAME) $(DESTDIR)$(LIBDIR)/libratectl-http.so
	install -m 644 $(STATIC) $(HTTP_STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 644 $(PC) $(HTTP_PC) $(DESTDIR)$(PKGCONFIGDIR)/
	for p in $(filter-out %.so,$(PROGS)); do install -m 755 $$p $(DESTDIR)$(BINDIR)/; done
	for p in $(filter %.so,$(PROGS)); do install -m 755 $$p $(DESTDIR)$(LIBDIR)/; done
	for m in $(wildcard doc/*.[1-8]); do s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
	  install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	@test -n "$(PYTHONDIR)" || { echo "make install: no PYTHONDIR (is $(PYTHON) there?)"; exit 1; }
	install -d $(DESTDIR)$(PYTHONDIR)/ratectl
	install -m 644 $(PY_SRC) $(DESTDIR)$(PYTHONDIR)/ratectl/
	printf '%s\n' '"""Where make install put the C libraries."""' 'LIBDIR = "$(LIBDIR)"' \
	  > $(DESTDIR)$(PYTHONDIR)/ratectl/_config.py
	@if [ -f $(NODE_ADDON) ]; then \
	  echo "install the Node package into $(DESTDIR)$(NODEDIR)/ratectl"; \
	  install -d $(DESTDIR)$(NODEDIR)/ratectl/lib $(DESTDIR)$(NODEDIR)/ratectl/build && \
	  install -m 644 lib/node/package.json lib/node/index.js lib/node/index.d.ts \
	    $(DESTDIR)$(NODEDIR)/ratectl/ && \
	  install -m 644 lib/node/lib/*.js $(DESTDIR)$(NODEDIR)/ratectl/lib/ && \
	  install -m 755 $(NODE_ADDON) $(DESTDIR)$(NODEDIR)/ratectl/build/ratectl.node; \
	else echo "no $(NODE_ADDON): the Node package is not installed"; fi

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/ratectl.h $(DESTDIR)$(LIBDIR)/libratectl.so* \
	  $(DESTDIR)$(LIBDIR)/libratectl.a $(DESTDIR)$(PKGCONFIGDIR)/ratectl.pc \
	  $(DESTDIR)$(INCDIR)/ratectl_http.h $(DESTDIR)$(LIBDIR)/libratectl-http.so* \
	  $(DESTDIR)$(LIBDIR)/libratectl-http.a $(DESTDIR)$(PKGCONFIGDIR)/ratectl-http.pc \
	  $(DESTDIR)$(LIBDIR)/libratectl-preload.so \
	  $(DESTDIR)$(BINDIR)/ratectl $(DESTDIR)$(BINDIR)/ratectl-fakeprov
	for m in $(wildcard doc/*.[1-8]); do s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; done
	test -z "$(PYTHONDIR)" || rm -rf $(DESTDIR)$(PYTHONDIR)/ratectl
	rm -rf $(DESTDIR)$(NODEDIR)/ratectl

clean:
	rm -rf $(B) build

-include $(LIB_OBJ:.o=.d) $(HTTP_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(PRELOAD_OBJ:.o=.d) $(NODE_OBJ:.o=.d)

