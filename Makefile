# graft: build the C module graft.core, run the specs, run the benchmark.
#
# luarocks (build.type "make") passes CFLAGS, LIBFLAG, LUA_INCDIR and the
# INST_* directories; by hand `make` works with the Debian defaults below.

LUA ?= lua5.4
LUA_INCDIR ?= /usr/include/lua5.4
CFLAGS ?= -O2 -g
LIBFLAG ?= -shared
PKG_CONFIG ?= pkg-config
DEPS = libzip libcjson hdf5

# Always on, whatever CFLAGS the caller passes.
GT_CFLAGS = -std=c11 -Wall -Wextra -Werror -fPIC -D_GNU_SOURCE -pthread \
            -I$(LUA_INCDIR) $(shell $(PKG_CONFIG) --cflags $(DEPS))
GT_LIBS = $(shell $(PKG_CONFIG) --libs $(DEPS)) -lz -lpthread -lm

SRC = $(wildcard src/*.c src/tensor/*.c src/formats/*.c)
OBJ = $(patsubst %.c,build/%.o,$(SRC))
HDR = $(wildcard src/*.h src/tensor/*.h src/formats/*.h)
MODULE = build/graft/core.so

INST_LIBDIR ?= /usr/local/lib/lua/5.4
INST_LUADIR ?= /usr/local/share/lua/5.4
INST_BINDIR ?= /usr/local/bin

.PHONY: all test check bench install clean asan fixtures

all: $(MODULE)

build/%.o: %.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GT_CFLAGS) -c $< -o $@

$(MODULE): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LIBFLAG) -pthread -o $@ $(OBJ) $(GT_LIBS)

# The whole suite; prints busted's TAP and a final "N passed, N failed".
test check: $(MODULE)
	@sh tools/run-specs

# Same suite with AddressSanitizer and UBSan (the module is rebuilt).
asan:
	$(MAKE) clean
	$(MAKE) CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" LIBFLAG="-shared -fsanitize=address,undefined"
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 sh tools/run-specs

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
