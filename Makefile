# ngx_http_loyalty_module: build, test and demo on Debian 12.
#
#   make          build build/ngx_http_loyalty_module.so against nginx-dev
#   make test     unit tests and the prove suite (real nginx, real Redis)
#   make demo     demo storefront on loopback ports, until Ctrl-C
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

.PHONY: all deps module unit test demo clean bench bench-quick

all: deps module

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
	    -ljansson -lcrypto

unit: deps $(UNIT_BINS)

test: deps module unit
	prove $(PROVE_FLAGS) t/

demo: deps module
	@sh demo/run.sh

# Benchmark against a plain proxy and a Lua peer (docs/benchmarks.md):
# make bench (3 rounds x 10 s, under 10 minutes), make bench-quick
# (1 round x 3 s, about a minute). Knobs (ROUNDS, DURATION, CONFIGS, ...)
# come from the environment; bench/run.sh --help lists them.
bench:
	@sh tools/install-deps.sh wrk libnginx-mod-http-lua lua-nginx-redis
	@$(MAKE) --no-print-directory module
	BENCH_COMMAND="make bench" bash bench/run.sh

bench-quick:
	@sh tools/install-deps.sh wrk libnginx-mod-http-lua lua-nginx-redis
	@$(MAKE) --no-print-directory module
	BENCH_COMMAND="make bench-quick" bash bench/run.sh --quick

clean:
	rm -rf $(BUILD)
