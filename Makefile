# ngx_studio_testusers_module: build against Debian's nginx-dev, test, run.
#
#   make run     build and start the gateway on 127.0.0.1:8080
#   make test    install what is missing, build, run every test
#   make fuzz    libFuzzer over the form decoder (FUZZ_SECONDS, default 60)

SHELL        := /bin/bash
NGX_SRC      ?= /usr/share/nginx/src
BUILD        := $(CURDIR)/build
MODULE       := objs/ngx_http_studio_testusers_module.so
SRC_DIR      := ngx_studio_testusers_module
SOURCES      := $(wildcard $(SRC_DIR)/*.c $(SRC_DIR)/*.h) config
PURE         := $(SRC_DIR)/ngx_http_studio_testusers_form.c \
                $(SRC_DIR)/ngx_http_studio_testusers_validate.c \
                $(SRC_DIR)/ngx_http_studio_testusers_hash.c
JSON         := $(SRC_DIR)/ngx_http_studio_testusers_json.c
CFLAGS_UNIT  := -std=c99 -O2 -g -Wall -Wextra -Werror -I$(SRC_DIR)
FUZZ_SECONDS ?= 60
PROVE_JOBS   ?= 2

.PHONY: all build deps test unit prove run fuzz fuzz-smoke clean bench soak deb \
        test-asan test-valgrind

all: build

build: $(MODULE)

deps:
	@tools/install-deps.sh

# hardened as Debian builds its own nginx and modules
BUILDFLAGS   = DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get
HARDEN_CC    = $(shell $(BUILDFLAGS) CFLAGS) $(shell $(BUILDFLAGS) CPPFLAGS)
HARDEN_LD    = $(shell $(BUILDFLAGS) LDFLAGS)

$(BUILD)/nginx-src/.configured: config
	rm -rf $(BUILD)/nginx-src $(BUILD)/ngx
	mkdir -p $(BUILD)
	cp -a $(NGX_SRC) $(BUILD)/nginx-src
	cd $(BUILD)/nginx-src && . ./conf_flags \
	    && ./configure "$${NGX_CONF_FLAGS[@]}" \
	       --with-cc-opt="$(HARDEN_CC)" --with-ld-opt="$(HARDEN_LD)" \
	       --add-dynamic-module=$(CURDIR) --builddir=$(BUILD)/ngx > $(BUILD)/configure.log \
	    || { tail -30 $(BUILD)/configure.log; exit 1; }
	touch $@

$(MODULE): $(BUILD)/nginx-src/.configured $(SOURCES)
	$(MAKE) -s -f $(BUILD)/ngx/Makefile -C $(BUILD)/nginx-src modules
	mkdir -p objs
	@# a new inode: running nginx processes keep the file they mapped
	cp $(BUILD)/ngx/ngx_http_studio_testusers_module.so $@.tmp
	mv -f $@.tmp $@

# the module with AddressSanitizer and UBSan, for Debian's own nginx with the
# sanitizer runtime preloaded (STUDIO_PRELOAD in t/lib/StudioTest.pm)
SAN_FLAGS    := -fsanitize=address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined
ASAN_MODULE  := $(BUILD)/asan/ngx_http_studio_testusers_module.so

$(BUILD)/asan/.configured: $(BUILD)/nginx-src/.configured config
	rm -rf $(BUILD)/asan
	cd $(BUILD)/nginx-src && . ./conf_flags \
	    && ./configure "$${NGX_CONF_FLAGS[@]}" \
	       --with-cc-opt="$(SAN_FLAGS)" --with-ld-opt="$(SAN_FLAGS)" \
	       --add-dynamic-module=$(CURDIR) --builddir=$(BUILD)/asan \
	       > $(BUILD)/configure-asan.log \
	    || { tail -30 $(BUILD)/configure-asan.log; exit 1; }
	touch $@

$(ASAN_MODULE): $(BUILD)/asan/.configured $(SOURCES)
	$(MAKE) -s -f $(BUILD)/asan/Makefile -C $(BUILD)/nginx-src modules

test-asan: deps
	$(MAKE) build unit $(ASAN_MODULE)
	STUDIO_MODULE=$(ASAN_MODULE) \
	STUDIO_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	    prove -j$(PROVE_JOBS) -I t/lib t/

# memcheck, master_process off: parts needing a master are skipped
test-valgrind: deps
	$(MAKE) build unit
	STUDIO_VALGRIND=1 prove -I t/lib t/

$(BUILD)/unit/%: t/unit/%.c $(PURE) $(wildcard $(SRC_DIR)/*.h)
	mkdir -p $(BUILD)/unit
	$(CC) $(CFLAGS_UNIT) -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -o $@ $< $(PURE)

unit: $(BUILD)/unit/form_test $(BUILD)/unit/validate_test \
      $(BUILD)/unit/hash_test

prove: build unit
	prove -j$(PROVE_JOBS) -I t/lib t/

test: deps
	$(MAKE) build unit
	$(MAKE) fuzz-smoke
	prove -j$(PROVE_JOBS) -I t/lib t/

FUZZ_CC      := clang -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -I$(SRC_DIR)

$(BUILD)/fuzz/form_fuzz: t/fuzz/form_fuzz.c $(PURE) $(wildcard $(SRC_DIR)/*.h)
	mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) -o $@ $< $(PURE)

$(BUILD)/fuzz/json_fuzz: t/fuzz/json_fuzz.c $(PURE) $(JSON) $(wildcard $(SRC_DIR)/*.h)
	mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) -o $@ $< $(PURE) $(JSON) -ljansson

# FUZZ_SECONDS for each target, in turn
fuzz: deps $(BUILD)/fuzz/form_fuzz $(BUILD)/fuzz/json_fuzz
	mkdir -p $(BUILD)/fuzz/corpus $(BUILD)/fuzz/json
	$(BUILD)/fuzz/form_fuzz -max_total_time=$(FUZZ_SECONDS) \
	    -dict=t/fuzz/form.dict $(BUILD)/fuzz/corpus t/fuzz/corpus
	$(BUILD)/fuzz/json_fuzz -max_total_time=$(FUZZ_SECONDS) \
	    $(BUILD)/fuzz/json t/fuzz/json-corpus

# a short run in every `make test`, so the targets and seeds never rot
fuzz-smoke: $(BUILD)/fuzz/form_fuzz $(BUILD)/fuzz/json_fuzz
	mkdir -p $(BUILD)/fuzz/smoke $(BUILD)/fuzz/json-smoke
	@$(BUILD)/fuzz/form_fuzz -runs=20000 -dict=t/fuzz/form.dict \
	    $(BUILD)/fuzz/smoke t/fuzz/corpus > $(BUILD)/fuzz/smoke.log 2>&1 \
	    && $(BUILD)/fuzz/json_fuzz -runs=20000 $(BUILD)/fuzz/json-smoke \
	    t/fuzz/json-corpus >> $(BUILD)/fuzz/smoke.log 2>&1 \
	    && echo "fuzz-smoke: 20000 runs of each fuzz target, no finding" \
	    || { tail -40 $(BUILD)/fuzz/smoke.log; exit 1; }

run: deps build
	@tools/run-gateway.sh

# wrk against a plain proxy_pass and a Lua version, results in bench/README.md
bench: deps build
	bench/run.sh

# mixed valid/invalid/hostile load with reloads and reopens (SOAK_SECONDS)
SOAK_SECONDS ?= 60
soak: deps build
	SOAK_SECONDS=$(SOAK_SECONDS) soak/run.sh

# Debian package of the module, as Debian packages its nginx modules
deb: deps build
	packaging/build-deb.sh

clean:
	rm -rf $(BUILD) objs
