# graft: build the C module graft.core, run the specs, run the benchmark.
#
# luarocks (build.type "make") passes CFLAGS, LIBFLAG, LUA_INCDIR and the
# INST_* directories; by hand `make` works with the Debian defaults below.

LUA ?= lua5.4
LUA_INCDIR ?= /usr/include/lua5.4
CFLAGS ?= -O2 -g
LIBFLAG ?= -shared
PKG_CONFIG ?= pkg-config
DEPS = libzip libcjson libprotobuf-c snappy hdf5

# Always on, whatever CFLAGS the caller passes.
GT_CFLAGS = -std=c11 -Wall -Wextra -Werror -fPIC -D_GNU_SOURCE -pthread \
            -I$(LUA_INCDIR) -Isrc -Ibuild/proto $(shell $(PKG_CONFIG) --cflags $(DEPS))
# -z nodelete: the copy pool's detached workers (src/tensor/copy.c) wait in
# this library's code and data; lua_close dlcloses C modules, which would
# unmap them under the workers (glibc then aborts at exit: "The futex
# facility returned an unexpected error code").
GT_LIBS = $(shell $(PKG_CONFIG) --libs $(DEPS)) -lz -lpthread -lm -Wl,-z,nodelete

# Hand-written C: the binding (src/*.c), the tensor core (src/tensor), the
# shared machinery formats stand on (src/io), one family per file or folder
# (src/formats). The protobuf-c code for proto/*.proto is a build output.
SRC = $(wildcard src/*.c src/tensor/*.c src/io/*.c src/formats/*.c src/formats/*/*.c)
PROTO = $(wildcard proto/*.proto)
PROTO_C = $(patsubst proto/%.proto,build/proto/%.pb-c.c,$(PROTO))
PROTO_H = $(PROTO_C:.c=.h)
OBJ = $(patsubst %.c,build/%.o,$(SRC)) $(PROTO_C:.c=.o)
HDR = $(wildcard src/*.h src/tensor/*.h src/io/*.h src/formats/*.h src/formats/*/*.h) $(PROTO_H)
MODULE = build/graft/core.so

INST_LIBDIR ?= /usr/local/lib/lua/5.4
INST_LUADIR ?= /usr/local/share/lua/5.4
INST_BINDIR ?= /usr/local/bin

.PHONY: all test check bench install clean asan asan-clang fixtures fuzz fuzz-all

all: $(MODULE)

build/%.o: %.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GT_CFLAGS) -c $< -o $@

build/proto/%.o: build/proto/%.c $(HDR)
	$(CC) $(CFLAGS) $(GT_CFLAGS) -c $< -o $@

# protoc-c (Debian's protobuf-c-compiler) writes every schema's C at once.
PROTOC_C ?= protoc-c
$(PROTO_H): $(PROTO_C)
$(PROTO_C) &: $(PROTO)
	@mkdir -p build/proto
	$(PROTOC_C) -Iproto --c_out=build/proto $(PROTO)

# protoc-c's generated initialisers nest a oneof union without braces.
build/proto/%.o: GT_CFLAGS += -Wno-missing-braces

$(MODULE): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LIBFLAG) -pthread -o $@ $(OBJ) $(GT_LIBS)

# The whole suite; prints busted's TAP and a final "N passed, N failed".
# GRAFT_ORACLE_PYTHON names the interpreter of the oracle environment (the
# real frameworks, tools/install-deps --test); specs reach it through
# spec/helper.lua's H.oracle.
ORACLE_PYTHON ?= $(CURDIR)/.venv-oracles/bin/python
test check: $(MODULE)
	@GRAFT_ORACLE_PYTHON="$${GRAFT_ORACLE_PYTHON:-$(ORACLE_PYTHON)}" sh tools/run-specs

# Same suite with AddressSanitizer and UBSan (the module is rebuilt, and
# cleaned afterwards so the next plain `make` builds a normal module).
# `make asan` uses $(CC) (gcc), `make asan-clang` the same with clang, whose
# UBSan checks more (pointer-overflow: arithmetic on a null pointer, which
# gcc's does not see). lua5.4 is not instrumented, so the sanitizer runtime
# is preloaded: gcc's libasan + libubsan, or clang's shared ASan runtime
# (it carries UBSan's too; the module links it with -shared-libsan).
SAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_CLANG = $(findstring clang,$(shell $(CC) --version 2>/dev/null | head -1))
SAN_LIBFLAG = -shared -fsanitize=address,undefined $(if $(SAN_CLANG),-shared-libsan)
SAN_PRELOAD = $(if $(SAN_CLANG),$$($(CC) -print-file-name=libclang_rt.asan-$$(uname -m).so),$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so))
asan:
	$(MAKE) clean
	$(MAKE) CFLAGS="$(SAN_FLAGS)" LIBFLAG="$(SAN_LIBFLAG)"
	LD_PRELOAD="$(SAN_PRELOAD)" ASAN_OPTIONS=detect_leaks=0 sh tools/run-specs; \
	  status=$$?; $(MAKE) clean; exit $$status

asan-clang:
	$(MAKE) asan CC=clang

# Every fixture generator of spec/fixtures/ into build/fixtures/ (the specs
# run them into temporary folders themselves; this is for looking at them).
fixtures: $(MODULE)
	@GRAFT_ORACLE_PYTHON="$${GRAFT_ORACLE_PYTHON:-$(ORACLE_PYTHON)}" sh tools/make-fixtures

bench: $(MODULE)
	@GRAFT_ORACLE_PYTHON="$${GRAFT_ORACLE_PYTHON:-$(ORACLE_PYTHON)}" sh bench/run

install: $(MODULE)
	mkdir -p $(INST_LIBDIR)/graft $(INST_LUADIR)/graft/formats $(INST_BINDIR)
	cp $(MODULE) $(INST_LIBDIR)/graft/core.so
	cp lua/graft/*.lua $(INST_LUADIR)/graft/
	cp lua/graft/formats/*.lua $(INST_LUADIR)/graft/formats/
	cp bin/graft $(INST_BINDIR)/graft
	chmod 755 $(INST_BINDIR)/graft

clean:
	rm -rf build

# libFuzzer targets (fuzz/*.c, one per parser entry point), built with clang,
# ASan and UBSan over the whole C core (not the Lua binding):
#   make fuzz T=torch S=60     run one target for S seconds (default 20)
#   make fuzz-all S=20         every target in turn; fails on any finding
FUZZ_CC ?= clang
FUZZ_FLAGS = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
             -fno-omit-frame-pointer
FUZZ_TARGETS = $(basename $(notdir $(filter-out fuzz/fuzz.c,$(wildcard fuzz/*.c))))
FUZZ_CORE = $(patsubst %.c,build/fuzz/%.o,$(filter-out src/lgraft%,$(SRC)) fuzz/fuzz.c) \
            $(patsubst build/proto/%.c,build/fuzz/proto/%.o,$(PROTO_C))
S ?= 20

# The core objects are kept between targets (make would delete them as
# intermediates of the pattern rules).
.SECONDARY: $(FUZZ_CORE)

build/fuzz/src/%.o build/fuzz/fuzz/%.o: GT_CFLAGS += -Ifuzz
build/fuzz/%.o: %.c $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(GT_CFLAGS) -c $< -o $@

build/fuzz/proto/%.o: build/proto/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(GT_CFLAGS) -Wno-missing-braces -c $< -o $@

build/fuzz/bin/%: fuzz/%.c fuzz/fuzz.h $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer $(GT_CFLAGS) -Ifuzz $< $(FUZZ_CORE) -o $@ $(GT_LIBS)

fuzz: build/fuzz/bin/$(T)
	@sh fuzz/run $(T) $(S)

fuzz-all: $(addprefix build/fuzz/bin/,$(FUZZ_TARGETS))
	@status=0; for t in $(FUZZ_TARGETS); do sh fuzz/run $$t $(S) || status=1; done; exit $$status
