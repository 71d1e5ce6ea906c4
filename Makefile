# ngx_http_loyalty_module: build, test and demo on Debian 12.
#
#   make          build build/ngx_http_loyalty_module.so against nginx-dev
#   make test     unit tests and the prove suite (real nginx, real Redis)
#   make demo     demo storefront on loopback ports, until Ctrl-C
#   make fuzz     libFuzzer on lib/ parsers, FUZZ_SECONDS (60) per target
#   make valgrind the prove suite with nginx under valgrind memcheck
#   make asan     the prove suite with an ASan/UBSan build of the module
#   make deb      build/libnginx-mod-http-loyalty_<version>_<arch>.deb
#   make deps     install the missing Debian packages (every target does)

NGINX_SRC   ?= /usr/share/nginx/src
BUILD       := $(CURDIR)/build
NGX_BUILD   := $(BUILD)/nginx
MODULE      := $(BUILD)/ngx_http_loyalty_module.so
CC          ?= cc
CFLAGS_LIB  := -std=c99 -O2 -g -Wall -Wextra -Werror -D_DEFAULT_SOURCE
LIB_DIR     := ngx_loyalty_module/lib
LIB_SRCS    := $(wildcard $(LIB_DIR)/*.c)
MOD_SRCS    := $(wildcard ngx_loyalty_module/*.c ngx_loyalty_module/*.h) \
               $(LIB_SRCS) $(wildcard $(LIB_DIR)/*.h)
UNIT_SRCS   := $(wildcard t/unit/test_*.c)
UNIT_BINS   := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))
PROVE_FLAGS ?= -r

# fuzz targets: t/fuzz/fuzz_<name>.c, seeds in t/fuzz/corpus/<name>/
FUZZ_NAMES  := $(patsubst t/fuzz/fuzz_%.c,%,$(wildcard t/fuzz/fuzz_*.c))
FUZZ_BINS   := $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_NAMES))
REPLAY_BINS := $(patsubst %,$(BUILD)/fuzz-replay/%,$(FUZZ_NAMES))
FUZZ_CC     ?= clang
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -I$(LIB_DIR)
FUZZ_SECONDS ?= 60
# the replay build: no libFuzzer, any compiler; ASan/UBSan from gcc
REPLAY_CFLAGS := $(CFLAGS_LIB) -O1 -fno-omit-frame-pointer \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined

.PHONY: all deps module unit test demo clean bench bench-quick \
        fuzz fuzz-replay valgrind asan deb

all: deps module $(BUILD)/loyalty-cookie

deps:
	@sh tools/install-deps.sh

module: $(MODULE)

# configure once per build dir, with Debian's own flags (conf_flags and
# dpkg-buildflags), as dh_nginx does: the module's struct layout must
# match Debian's binary, which an upstream tarball does not.
$(NGX_BUILD)/Makefile: config
	rm -rf $(NGX_BUILD)
	mkdir -p $(NGX_BUILD)
	cd $(NGINX_SRC) && bash -c '. ./conf_flags; ./configure \
	    --with-cc-opt="$$(dpkg-buildflags --get CFLAGS) -fPIC $$(dpkg-buildflags --get CPPFLAGS)" \
	    --with-ld-opt="$$(dpkg-buildflags --get LDFLAGS) -fPIC" \
	    "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$(CURDIR)" \
	    --builddir="$(NGX_BUILD)"' > $(BUILD)/configure.log 2>&1 \
	    || { tail -20 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(NGX_BUILD)/Makefile $(MOD_SRCS)
	$(MAKE) -s -f $(NGX_BUILD)/Makefile -C $(NGINX_SRC) modules
	@# a new file, renamed over the old one: a running nginx keeps the
	@# inode it mapped; cp would rewrite its code underneath it
	cp $(NGX_BUILD)/ngx_http_loyalty_module.so $@.tmp
	mv -f $@.tmp $@

$(BUILD)/unit/%: t/unit/%.c t/unit/tap.h $(LIB_SRCS) $(wildcard $(LIB_DIR)/*.h)
	@mkdir -p $(BUILD)/unit
	$(CC) $(CFLAGS_LIB) -I$(LIB_DIR) -It/unit -o $@ $< $(LIB_SRCS) \
	    -ljansson -lcrypto -lm

unit: deps $(UNIT_BINS)

# mints and checks signed cookies with the module's own codec
# (docs/cookie-signing.md)
$(BUILD)/loyalty-cookie: tools/loyalty-cookie.c $(LIB_SRCS) \
                         $(wildcard $(LIB_DIR)/*.h)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_LIB) -I$(LIB_DIR) -o $@ tools/loyalty-cookie.c \
	    $(LIB_SRCS) -lcrypto -ljansson -lm

test: deps module unit fuzz-replay $(BUILD)/loyalty-cookie deb
	prove $(PROVE_FLAGS) t/

$(BUILD)/fuzz/fuzz_%: t/fuzz/fuzz_%.c t/fuzz/fuzz.h $(LIB_SRCS) \
                      $(wildcard $(LIB_DIR)/*.h)
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRCS) -lcrypto -ljansson -lm

$(BUILD)/fuzz-replay/%: t/fuzz/fuzz_%.c t/fuzz/replay.c t/fuzz/fuzz.h \
                        $(LIB_SRCS) $(wildcard $(LIB_DIR)/*.h)
	@mkdir -p $(BUILD)/fuzz-replay
	$(CC) $(REPLAY_CFLAGS) -I$(LIB_DIR) -It/fuzz -o $@ $< t/fuzz/replay.c \
	    $(LIB_SRCS) -lcrypto -ljansson -lm

# the corpora replayed by t/11-fuzz-replay.t, part of make test
fuzz-replay: deps $(REPLAY_BINS)

# each target for FUZZ_SECONDS on a scratch copy of its corpus (new
# inputs stay in build/fuzz/work, t/fuzz/corpus is never written);
# crashes are saved as build/fuzz/<name>-crash-*
fuzz: deps $(FUZZ_BINS)
	@sh t/fuzz/run.sh $(FUZZ_SECONDS) $(BUILD)/fuzz $(FUZZ_NAMES)

# the prove suite with every nginx (masters, workers, nginx -t) under
# valgrind memcheck, one log per process in build/valgrind, then the
# verdict on the logs: no memcheck error, no definite leak through the
# module (tools/valgrind-check); the checker runs even if prove fails
valgrind: deps module unit fuzz-replay $(BUILD)/loyalty-cookie
	rm -rf $(BUILD)/valgrind
	@mkdir -p $(BUILD)/valgrind
	@NGINX_BINARY=$(CURDIR)/tools/valgrind-nginx LOYALTY_VALGRIND=1 \
	    LOYALTY_VALGRIND_DIR=$(BUILD)/valgrind prove $(PROVE_FLAGS) t/; \
	rc=$$?; perl tools/valgrind-check $(BUILD)/valgrind && exit $$rc

# The module built with AddressSanitizer and UBSan (-O1, frame pointers)
# in build/asan, configured like the normal build (Debian's flags, its
# own builddir), and the prove suite with nginx started by
# tools/asan-nginx, which preloads the sanitizer runtimes.  FILES= runs a
# subset (default: every test but the .deb and the browser ones); then
# tools/asan-check fails on any report, even if prove passed.
ASAN_BUILD  := $(BUILD)/asan
ASAN_NGX    := $(ASAN_BUILD)/nginx
ASAN_MODULE := $(ASAN_BUILD)/ngx_http_loyalty_module.so
ASAN_FLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
ASAN_FILES  := $(filter-out t/15-browser.t t/16-deb.t,$(wildcard t/*.t))

$(ASAN_NGX)/Makefile: config
	rm -rf $(ASAN_NGX)
	mkdir -p $(ASAN_NGX)
	cd $(NGINX_SRC) && bash -c '. ./conf_flags; ./configure \
	    --with-cc-opt="$$(dpkg-buildflags --get CFLAGS) -fPIC $$(dpkg-buildflags --get CPPFLAGS) $(ASAN_FLAGS)" \
	    --with-ld-opt="$$(dpkg-buildflags --get LDFLAGS) -fPIC -fsanitize=address,undefined" \
	    "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$(CURDIR)" \
	    --builddir="$(ASAN_NGX)"' > $(ASAN_BUILD)/configure.log 2>&1 \
	    || { tail -20 $(ASAN_BUILD)/configure.log; exit 1; }

$(ASAN_MODULE): $(ASAN_NGX)/Makefile $(MOD_SRCS)
	$(MAKE) -s -f $(ASAN_NGX)/Makefile -C $(NGINX_SRC) modules
	cp $(ASAN_NGX)/ngx_http_loyalty_module.so $@.tmp
	mv -f $@.tmp $@

asan: deps $(ASAN_MODULE) unit fuzz-replay $(BUILD)/loyalty-cookie
	rm -rf $(ASAN_BUILD)/logs
	@mkdir -p $(ASAN_BUILD)/logs
	@NGINX_BINARY=$(CURDIR)/tools/asan-nginx LOYALTY_MODULE=$(ASAN_MODULE) \
	    LOYALTY_ASAN_DIR=$(ASAN_BUILD)/logs \
	    prove $(PROVE_FLAGS) $(or $(FILES),$(ASAN_FILES)); \
	rc=$$?; sh tools/asan-check $(ASAN_BUILD)/logs && exit $$rc

demo: deps module $(BUILD)/loyalty-cookie
	@sh demo/run.sh

# Benchmark against a plain proxy and a Lua peer (docs/benchmarks.md):
# make bench (3 rounds x 8 s, about 11 minutes), make bench-quick
# (1 round x 3 s, about 2 minutes). Knobs (ROUNDS, DURATION, CONFIGS, ...)
# come from the environment; bench/run.sh --help lists them.
bench:
	@sh tools/install-deps.sh wrk libnginx-mod-http-lua lua-nginx-redis
	@$(MAKE) --no-print-directory module
	BENCH_COMMAND="make bench" bash bench/run.sh

bench-quick:
	@sh tools/install-deps.sh wrk libnginx-mod-http-lua lua-nginx-redis
	@$(MAKE) --no-print-directory module
	BENCH_COMMAND="make bench-quick" bash bench/run.sh --quick

# The Debian package (docs/packaging.md), built the Debian way
# (dpkg-buildpackage, dh --with nginx) in a scratch copy of the tree,
# build/deb/src; t/16-deb.t installs it.  The version is debian/changelog's.
DEB_VERSION := $(shell sed -n '1s/^[^(]*(\([0-9]*:\)\{0,1\}\([^)]*\)).*/\2/p' debian/changelog)
DEB_ARCH    := $(shell dpkg --print-architecture)
DEB         := $(BUILD)/libnginx-mod-http-loyalty_$(DEB_VERSION)_$(DEB_ARCH).deb

deb:
	@sh tools/install-deps.sh debhelper dpkg-dev build-essential
	@$(MAKE) --no-print-directory $(DEB)

$(DEB): config $(MOD_SRCS) $(wildcard debian/* debian/source/*) \
        tools/build-deb.sh
	@sh tools/build-deb.sh $(BUILD)/deb $@

clean:
	rm -rf $(BUILD)
