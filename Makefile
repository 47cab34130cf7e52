# marsseg — `make run` serves the default model, `make test` runs every test.
# Missing Debian packages are installed first (tools/deps.sh); SAN=1 builds with ASan+UBSan.

SAN      ?= 0
BUILD    ?= build$(if $(filter 1,$(SAN)),-san,)
CC       ?= cc
PKGS     := libpng zlib libcjson libmicrohttpd
# OpenBLAS built for OpenMP: one thread pool shared with our own OpenMP loops (the pthread build
# and libgomp would spin against each other on 2 cores), and single-threaded GEMMs inside our
# parallel regions.
OPENBLAS := /usr/lib/x86_64-linux-gnu/openblas-openmp
OPT      ?= -O2 -march=x86-64-v3 -mtune=znver3
comma    := ,
SANFLAGS := $(if $(filter 1,$(SAN)),-fsanitize=address$(comma)undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
CFLAGS   := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -fopenmp -Iinclude -Icore $(SANFLAGS) \
            -I/usr/include/x86_64-linux-gnu/openblas-openmp $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   := -L$(OPENBLAS) -Wl,-rpath,$(OPENBLAS) -lopenblas $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LDFLAGS  := -fopenmp $(SANFLAGS)

CORE_SRC := $(wildcard core/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB      := $(BUILD)/libmarsseg.a
DEPS_OK  := build/.deps-ok

.PHONY: all deps test bench clean fixtures model
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

# Benchmarks (never part of `make test`): speed as ratios to this machine's own sgemm peak, and
# to PyTorch when PEER=1 (bench/peer.py, Debian's python3-torch).
$(BUILD)/bench_unet: bench/bench_unet.c $(LIB)
	$(CC) $(CFLAGS) $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS)

bench: $(BUILD)/bench_unet
ifeq ($(PEER),1)
	@command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c 'import torch' 2>/dev/null || \
	  (echo "PEER=1 needs Debian's python3-torch: apt-get install -y python3-torch" >&2; exit 1)
	/usr/bin/python3 bench/peer.py > $(BUILD)/peer.json
	./$(BUILD)/bench_unet 3 $(BUILD)/peer.json
else
	./$(BUILD)/bench_unet 3
endif

# The bundled default model: trained on the developers' AI4Mars file (../shared/data), resumable:
# an interrupted `make model` continues from runs/default/checkpoint.npz.
MODEL_RUN ?= runs/default
model: $(BIN)
	@mkdir -p $(dir $(MODEL_RUN))
	@if [ -f $(MODEL_RUN)/checkpoint.npz ]; then ./$(BIN) train --resume $(MODEL_RUN); \
	 else ./$(BIN) train --config models/default.json --out $(MODEL_RUN); fi
	cp $(MODEL_RUN)/model.npz models/default.npz.tmp && mv models/default.npz.tmp models/default.npz
	./$(BIN) eval --model models/default.npz --split-of models/default.json
	./$(BIN) eval --model models/default.npz --split-of models/default.json --tta

# Regenerate the PyTorch reference fixtures (needs Debian's python3-torch; not run by CI).
fixtures:
	/usr/bin/python3 tools/make_fixtures.py

# The marsseg binary (server/: HTTP service + CLI) and its integration tests (libcurl, only there).
SERVER_SRC := $(wildcard server/*.c)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
BIN        := $(BUILD)/marsseg
.PHONY: run
all: $(BIN)

$(BIN): $(SERVER_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(SERVER_OBJ) $(LIB) -o $@ $(LDLIBS)

$(BUILD)/tests/test_server: tests/test_server.c tests/testutil.h $(LIB) $(BIN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS) -lcurl

$(BUILD)/tests/test_server_%: tests/test_server_%.c tests/testutil.h $(LIB) $(BIN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS) -lcurl

run: $(BIN)
	./$(BIN) serve

clean:
	rm -rf build build-san

-include $(CORE_OBJ:.o=.d) $(SERVER_OBJ:.o=.d)
