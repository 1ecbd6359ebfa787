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
            -I$(LUA_INCDIR) -Iproto $(shell $(PKG_CONFIG) --cflags $(DEPS))
GT_LIBS = $(shell $(PKG_CONFIG) --libs $(DEPS)) -lz -lpthread -lm

SRC = $(wildcard src/*.c src/tensor/*.c src/formats/*.c proto/*.c)
OBJ = $(patsubst %.c,build/%.o,$(SRC))
HDR = $(wildcard src/*.h src/tensor/*.h src/formats/*.h proto/*.h)
MODULE = build/graft/core.so

INST_LIBDIR ?= /usr/local/lib/lua/5.4
INST_LUADIR ?= /usr/local/share/lua/5.4
INST_BINDIR ?= /usr/local/bin

.PHONY: all test check bench install clean asan fixtures proto proto-check

all: $(MODULE)

build/%.o: %.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GT_CFLAGS) -c $< -o $@

# protoc-c's generated initialisers nest a oneof union without braces.
build/proto/%.o: GT_CFLAGS += -Wno-missing-braces

$(MODULE): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LIBFLAG) -pthread -o $@ $(OBJ) $(GT_LIBS)

# The whole suite; prints busted's TAP and a final "N passed, N failed".
test check: $(MODULE)
	@sh tools/run-specs

# Same suite with AddressSanitizer and UBSan (the module is rebuilt, and
# cleaned afterwards so the next plain `make` builds a normal module).
asan:
	$(MAKE) clean
	$(MAKE) CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" LIBFLAG="-shared -fsanitize=address,undefined"
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 sh tools/run-specs; \
	  status=$$?; $(MAKE) clean; exit $$status

bench: $(MODULE)
	@sh bench/run

install: $(MODULE)
	mkdir -p $(INST_LIBDIR)/graft $(INST_LUADIR)/graft $(INST_BINDIR)
	cp $(MODULE) $(INST_LIBDIR)/graft/core.so
	cp lua/graft/*.lua $(INST_LUADIR)/graft/
	cp bin/graft $(INST_BINDIR)/graft
	chmod 755 $(INST_BINDIR)/graft

clean:
	rm -rf build

# TensorFlow schemas: the generated C is committed so that building needs no
# protoc-c; `make proto` regenerates it, `make proto-check` fails when the
# committed files differ from what protoc-c makes of the .proto files.
PROTOC_C ?= protoc-c
proto:
	cd proto && $(PROTOC_C) -I. --c_out=. *.proto

proto-check:
	@tmp=$$(mktemp -d) && cp proto/*.proto $$tmp/ && \
	  (cd $$tmp && $(PROTOC_C) -I. --c_out=. *.proto) && \
	  for f in $$tmp/*.pb-c.[ch]; do \
	    cmp -s $$f proto/$$(basename $$f) || { echo "proto-check: proto/$$(basename $$f) is stale (run make proto)"; rm -rf $$tmp; exit 1; }; \
	  done; \
	  n=$$(ls proto/*.pb-c.[ch] | wc -l); m=$$(ls $$tmp/*.pb-c.[ch] | wc -l); rm -rf $$tmp; \
	  [ "$$n" = "$$m" ] || { echo "proto-check: proto/ has $$n generated files, protoc-c makes $$m"; exit 1; }; \
	  echo "proto-check: generated C matches proto/*.proto"
