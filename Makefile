# marsseg — `make run` serves the default model, `make test` runs every test.
# Missing Debian packages are installed first (tools/deps.sh); SAN=1 builds with ASan+UBSan.

SAN      ?= 0
BUILD    := build$(if $(filter 1,$(SAN)),-san,)
CC       ?= cc
PKGS     := openblas libpng zlib libcjson libmicrohttpd
OPT      ?= -O2 -march=x86-64-v3 -mtune=znver3
comma    := ,
SANFLAGS := $(if $(filter 1,$(SAN)),-fsanitize=address$(comma)undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
CFLAGS   := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -fopenmp -Iinclude -Icore $(SANFLAGS) \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LDFLAGS  := -fopenmp $(SANFLAGS)

CORE_SRC := $(wildcard core/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB      := $(BUILD)/libmarsseg.a
DEPS_OK  := build/.deps-ok

.PHONY: all deps test bench clean fixtures
all: $(LIB) $(TEST_BIN)

deps $(DEPS_OK): tools/deps.sh
	@bash tools/deps.sh
	@mkdir -p build && touch $(DEPS_OK)

$(BUILD)/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(CORE_OBJ)
	ar rcs $@ $^

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS)

test: $(TEST_BIN)
	@bash tests/run.sh $(BUILD)/tests

# Regenerate the PyTorch reference fixtures (needs Debian's python3-torch; not run by CI).
fixtures:
	/usr/bin/python3 tools/make_fixtures.py

clean:
	rm -rf build build-san

-include $(CORE_OBJ:.o=.d)
