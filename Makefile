# marsseg — `make run` serves the default model, `make test` runs every test.
# Missing Debian packages are installed first (tools/deps.sh); SAN=1 builds with ASan+UBSan.

# Missing Debian packages are installed before anything else is evaluated: pkg-config below must
# already see them. build/.deps-ok records a successful check of this version of tools/deps.sh
# (its checksum), so a package added there is installed by the next make; `make deps` re-runs it.
DEPS_SUM := $(firstword $(shell cksum tools/deps.sh))
ifneq ($(shell cat build/.deps-ok 2>/dev/null),$(DEPS_SUM))
ifeq ($(filter clean deps,$(MAKECMDGOALS)),)
DEPS_RC := $(shell bash tools/deps.sh >&2; echo $$?)
ifneq ($(DEPS_RC),0)
$(error marsseg: missing Debian packages (see the apt-get line above))
endif
$(shell mkdir -p build && echo $(DEPS_SUM) > build/.deps-ok)
endif
endif

SAN      ?= 0
# MPI=1: the same sources with mpicc and -DMS_MPI into build-mpi/ (data-parallel `train` under
# mpirun; see the MPI block below). The plain build never sees MPI.
MPI      ?= 0
BUILD    ?= build$(if $(filter 1,$(MPI)),-mpi,)$(if $(filter 1,$(SAN)),-san,)
CC       ?= cc
PKGS     := libpng zlib libcjson libmicrohttpd libcurl
# OpenBLAS built for OpenMP: one thread pool shared with our own OpenMP loops (the pthread build
# and libgomp would spin against each other on 2 cores), and single-threaded GEMMs inside our
# parallel regions.
OPENBLAS := /usr/lib/x86_64-linux-gnu/openblas-openmp
OPT      ?= -O3 -march=x86-64-v3 -mtune=znver3
comma    := ,
SANFLAGS := $(if $(filter 1,$(SAN)),-fsanitize=address$(comma)undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
# TSAN=1: ThreadSanitizer (used through `make tsan`, into $(BUILD)-tsan; see below)
ifeq ($(TSAN),1)
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
OPT      := -O1
endif
# -Wmissing-prototypes: every global function has a prototype in a header (or is static).
CFLAGS   := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -Wmissing-prototypes -fopenmp -Iinclude -Icore $(SANFLAGS) \
            -I/usr/include/x86_64-linux-gnu/openblas-openmp $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   := -L$(OPENBLAS) -Wl,-rpath,$(OPENBLAS) -lopenblas $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LDFLAGS  := -fopenmp $(SANFLAGS)
ifeq ($(MPI),1)
CC       := mpicc
CFLAGS   += -DMS_MPI
endif

CORE_SRC := $(wildcard core/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB      := $(BUILD)/libmarsseg.a
DEPS_OK  := build/.deps-ok

.PHONY: all deps test bench clean fixtures model
all: $(LIB) $(TEST_BIN)

deps:
	@bash tools/deps.sh
	@mkdir -p build && echo $(DEPS_SUM) > $(DEPS_OK)

$(DEPS_OK):
	@mkdir -p build && echo $(DEPS_SUM) > $(DEPS_OK)

$(BUILD)/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(CORE_OBJ)
	ar rcs $@ $^

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS)

# Without SAN=1, `make test` also builds the ThreadSanitizer server that test_server_tsan drives.
# The CLI's convolution plans (core/plan.c) go to a file in the build, not the user's cache.
test: $(TEST_BIN) $(if $(filter 1,$(SAN)),,tsan-build)
	@MARSSEG_PLAN=$(abspath $(BUILD))/test-plan.json bash tests/run.sh $(BUILD)/tests

# Benchmarks (never part of `make test`): speed as ratios to this machine's own sgemm peak, and
# to PyTorch when PEER=1 (bench/peer.py, Debian's python3-torch).
$(BUILD)/bench_unet: bench/bench_unet.c bench/bench_util.h $(LIB)
	$(CC) $(CFLAGS) $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS)

# issue 14: `marsseg predict`'s rate against the batch-32 inference rate (bench/bench_predict.c)
$(BUILD)/bench_predict: bench/bench_predict.c bench/bench_util.h $(LIB)
	$(CC) $(CFLAGS) $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS)

# where a batch-1 inference's time goes: each 3x3 convolution shape with every candidate, one
# thread's CPU time (bench/bench_layers.c)
$(BUILD)/bench_layers: bench/bench_layers.c $(LIB)
	$(CC) $(CFLAGS) $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS)

bench: $(BUILD)/bench_unet $(BUILD)/bench_predict $(BUILD)/bench_layers $(BIN)
ifeq ($(PEER),1)
	@command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c 'import torch' 2>/dev/null || \
	  (echo "PEER=1 needs Debian's python3-torch: apt-get install -y python3-torch" >&2; exit 1)
	/usr/bin/python3 bench/peer.py > $(BUILD)/peer.json
	./$(BUILD)/bench_unet 5 $(BUILD)/peer.json | tee $(BUILD)/bench.txt
else
	./$(BUILD)/bench_unet 5 | tee $(BUILD)/bench.txt
endif
	./$(BUILD)/bench_predict 128 9 | tee -a $(BUILD)/bench.txt
	./$(BUILD)/bench_layers 32 100 | tee -a $(BUILD)/bench.txt
	./$(BUILD)/bench_layers 16 100 | tee -a $(BUILD)/bench.txt
	bash bench/segment_load.sh $(BIN) 10 $$(sed -n 's/^F=16 infer (medians, best of [0-9]* passes): batch 1 \([0-9.]*\) ms.*/\1/p' $(BUILD)/bench.txt)
	bash bench/segment_latency.sh $(BIN) 200
	bash bench/replicas.sh $(BIN) 10

# The bundled default model: trained in four stages on the developers' AI4Mars file
# (../shared/data), resumable: an interrupted `make model` continues where it stopped.
# See tools/train_default.sh.
model: $(BIN)
	bash tools/train_default.sh $(BIN)

# Regenerate the PyTorch reference fixtures (needs Debian's python3-torch; not run by CI).
fixtures:
	/usr/bin/python3 tools/make_fixtures.py
	/usr/bin/python3 tools/make_resize_fixture.py

# The marsseg binary (cli/: main.c and the subcommands; server/: the HTTP service that `serve`
# runs) and its integration tests (libcurl, only there).
SERVER_SRC := $(wildcard cli/*.c server/*.c)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
# the server sees only the public headers of include/: core/ stays private to the core
$(SERVER_OBJ): CFLAGS := $(filter-out -Icore,$(CFLAGS))
BIN        := $(BUILD)/marsseg
.PHONY: run
all: $(BIN)

# the OpenAPI document's parts are built into the binary (.incbin in server/openapi.c)
$(BUILD)/server/openapi.o: $(wildcard openapi/*.json)

$(BIN): $(SERVER_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(SERVER_OBJ) $(LIB) -o $@ $(LDLIBS)

$(BUILD)/tests/test_server: tests/test_server.c tests/testutil.h tests/srvutil.h tests/srvhttp.h $(LIB) $(BIN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS) -lcurl

$(BUILD)/tests/test_server_%: tests/test_server_%.c tests/testutil.h $(LIB) $(BIN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -DMS_SRC_DIR='"$(CURDIR)"' -DMS_TSAN_BIN='"$(abspath $(TSAN_BUILD))/marsseg"' $< -o $@ \
	  $(LIB) $(LDFLAGS) $(LDLIBS) -lcurl

# the server tests share tests/srvutil.h (the process, fixtures), tests/srvhttp.h (the libcurl client),
# tests/srvmixed.h (the mixed workload), tests/reliability.h (the reliability tests' fixtures) and
# tests/srvpass.h (predictions and evaluations)
$(filter $(BUILD)/tests/test_server_%,$(TEST_BIN)): tests/srvutil.h tests/srvhttp.h tests/srvmixed.h tests/reliability.h tests/srvpass.h tests/npzutil.h tests/openapi_passes.h
$(BUILD)/tests/test_server_labelstudio $(BUILD)/tests/test_server_openapi: tests/lsutil.h
$(BUILD)/tests/test_png $(BUILD)/tests/test_png_corrupt: tests/pngmake.h
$(filter $(BUILD)/tests/test_npz% $(BUILD)/tests/test_npy,$(TEST_BIN)): tests/npzutil.h
$(BUILD)/tests/test_data $(BUILD)/tests/test_data_augment: tests/course.h
$(BUILD)/tests/test_layers: tests/unet_ref.h
$(BUILD)/tests/test_layers $(BUILD)/tests/test_kernels: tests/layertest.h

$(BUILD)/tests/test_dashboard: tests/test_dashboard.c tests/testutil.h $(BIN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< -o $@ $(LDFLAGS)

# test_docs reads README.md and the sources of this tree
$(BUILD)/tests/test_docs: private CFLAGS += -DMS_SRC_DIR='"$(CURDIR)"'

$(BUILD)/tests/test_dashboard_ux: tests/test_dashboard_ux.c tests/testutil.h $(BIN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< -o $@ $(LDFLAGS)

$(BUILD)/tests/test_cli: tests/test_cli.c tests/testutil.h $(LIB) $(BIN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/test_calibrate: tests/test_calibrate.c tests/testutil.h $(LIB) $(BIN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS)

run: $(BIN)
	./$(BIN) serve

clean:
	rm -rf build build-san build-tsan build-mpi

# ---- reliability (issue 8), besides fuzzing below. All four tests are part of `make test`.
# ThreadSanitizer: the server (core included) built with -fsanitize=thread -O1 into $(BUILD)-tsan;
# tests/test_server_tsan (an ordinary build) drives it with concurrent /segment, jobs, model
# switches and uploads, TSAN_OPTIONS=halt_on_error=1 (suppressions: tests/tsan.supp).
# valgrind: tests/test_server_valgrind runs the normal server under memcheck for 480 mixed
# requests (suppressions: tests/valgrind.supp). Load: tests/test_server_load (wrk, LOAD_S
# seconds, default 60). Crash consistency: tests/test_server_crash (CRASH_ITERS, CRASH_SEED).
TSAN_BUILD := $(BUILD)-tsan
.PHONY: tsan tsan-build valgrind load crash
tsan-build:
	@$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) TSAN=1 SAN=0 $(TSAN_BUILD)/marsseg
tsan: tsan-build $(BUILD)/tests/test_server_tsan
	./$(BUILD)/tests/test_server_tsan
valgrind: $(BIN) $(BUILD)/tests/test_server_valgrind
	./$(BUILD)/tests/test_server_valgrind
load: $(BIN) $(BUILD)/tests/test_server_load
	./$(BUILD)/tests/test_server_load
crash: $(BIN) $(BUILD)/tests/test_server_crash
	./$(BUILD)/tests/test_server_crash

# The Docker image end to end (tests/docker.sh: needs a Docker engine and curl; not part of
# `make test`). DOCKER_TEST_FLAGS: --rmi, --no-build, --model FILE, --mpi (the MPI variant too).
.PHONY: docker-test
docker-test:
	bash tests/docker.sh $(DOCKER_TEST_FLAGS)
# deploy/compose.yaml end to end: HAProxy, two inference replicas and a trainer in containers
# (tests/compose.sh: a Docker engine and a compose command; not part of `make test`)
.PHONY: compose-test
compose-test:
	bash tests/compose.sh $(COMPOSE_TEST_FLAGS)

-include $(CORE_OBJ:.o=.d) $(SERVER_OBJ:.o=.d)

# ---- fuzzing (issue 8): libFuzzer harnesses in fuzz/, built with clang (+ASan+UBSan) from just
# the sources each one needs. `make fuzz FUZZ_S=60` runs them one after the other, niced, each
# for FUZZ_S seconds (FUZZ_TARGETS="npz png" picks some). New corpus entries go to
# build/fuzz/corpus/<t>, crashes to build/fuzz/artifacts/<t>/; minimise and copy a crashing input
# to fuzz/regress/<t>/ and tests/test_fuzz_regress (part of `make test`) replays it for good.
FUZZ_CC      ?= clang
FUZZ_S       ?= 60
FUZZ_RSS     ?= 2048
FUZZ_TIMEOUT ?= 10
FUZZ_OPTS    ?= -use_value_profile=1
FUZZ_BUILD   := build/fuzz
FUZZ_ALL     := npz png multipart config oip labelstudio
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Wmissing-prototypes -Iinclude -Icore \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                $(shell pkg-config --cflags libpng zlib libcjson 2>/dev/null)
FUZZ_LIBS    := $(shell pkg-config --libs libpng zlib libcjson 2>/dev/null) -lm
FUZZ_SRC_npz       := core/npz.c core/npy.c core/zip.c core/zip_write.c core/data.c core/fileio.c core/status.c
FUZZ_SRC_png       := core/png.c core/status.c
FUZZ_SRC_multipart := server/multipart.c core/png.c core/status.c
FUZZ_SRC_config    := core/config.c core/status.c server/jobreq.c
FUZZ_SRC_oip       := server/oip_request.c server/jobreq.c core/config.c core/status.c
FUZZ_SRC_labelstudio := server/ls_config.c server/ls_rle.c
FUZZ_LEN_npz       := 32768
FUZZ_LEN_png       := 65536
FUZZ_LEN_multipart := 16384
FUZZ_LEN_config    := 4096
FUZZ_LEN_oip       := 16384
FUZZ_LEN_labelstudio := 8192

define FUZZ_RULES
$(FUZZ_BUILD)/fuzz_$(1): fuzz/fuzz_$(1).c fuzz/fuzz_common.h $(FUZZ_SRC_$(1)) | $(DEPS_OK)
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs clang with libFuzzer (Debian 12: apt-get install clang-14 libclang-rt-14-dev; FUZZ_CC=clang-14)" >&2; exit 1; }
	@mkdir -p $$(dir $$@)
	nice -n 19 $(FUZZ_CC) $(FUZZ_CFLAGS) $$(filter %.c,$$^) -o $$@ $(FUZZ_LIBS)

.PHONY: fuzz-$(1)
fuzz-$(1): $(FUZZ_BUILD)/fuzz_$(1)
	@mkdir -p $(FUZZ_BUILD)/corpus/$(1) $(FUZZ_BUILD)/artifacts/$(1)
	nice -n 19 ./$(FUZZ_BUILD)/fuzz_$(1) -max_total_time=$(FUZZ_S) -max_len=$(FUZZ_LEN_$(1)) \
	  -rss_limit_mb=$(FUZZ_RSS) -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 $(FUZZ_OPTS) \
	  -artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)/ $(addprefix -dict=,$(wildcard fuzz/$(1).dict)) \
	  $(FUZZ_BUILD)/corpus/$(1) fuzz/corpus/$(1) $(wildcard fuzz/regress/$(1))
endef
$(foreach t,$(FUZZ_ALL),$(eval $(call FUZZ_RULES,$(t))))

.PHONY: fuzz
fuzz:
	@for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-$$t || exit 1; done

# The replay test #includes the harnesses, server/multipart.c, server/jobreq.c, server/oip_request.c
# and the Label Studio parsers.
$(BUILD)/tests/test_fuzz_regress: $(wildcard fuzz/*.c fuzz/*.h) server/multipart.c server/multipart.h server/jobreq.c server/jobreq.h \
  server/oip_request.c server/oip.h server/ls_config.c server/ls_rle.c server/labelstudio.h

# ---- MPI (issue 16): data-parallel training. `make MPI=1` (or `make mpi`) builds build-mpi/marsseg
# with mpicc (Open MPI, from tools/deps.sh); `mpirun -np N build-mpi/marsseg train ...` trains one
# model across N processes. `make test` builds it too and tests/test_mpi runs it under mpirun
# (and tests/mpi_dist.c, an MPI program over the core: the dist layer, sync BatchNorm, split Dice).
MPI_BUILD := build-mpi
.PHONY: mpi mpi-build bench-mpi
mpi mpi-build:
	@command -v mpicc >/dev/null || { echo "make MPI=1 needs Open MPI: apt-get install openmpi-bin libopenmpi-dev" >&2; exit 1; }
	@$(MAKE) --no-print-directory MPI=1 SAN=0 BUILD=$(MPI_BUILD) $(MPI_BUILD)/marsseg $(MPI_BUILD)/tests/mpi_dist
$(BUILD)/tests/test_mpi: private CFLAGS += -DMS_SRC_DIR='"$(CURDIR)"' -DMS_MPI_BUILD='"$(abspath $(MPI_BUILD))"' -DMS_PLAIN_BIN='"$(abspath $(BIN))"'
$(BUILD)/tests/test_mpi: $(BIN)
test: $(if $(shell command -v mpicc),mpi-build,)
# the gradient all-reduce against the step time; 2 ranks x 1 thread against 1 rank x 2 threads
$(BUILD)/bench_mpi: bench/bench_mpi.c bench/bench_util.h $(LIB)
	$(CC) $(CFLAGS) $< -o $@ $(LIB) $(LDFLAGS) $(LDLIBS)
bench-mpi:
	@$(MAKE) --no-print-directory MPI=1 SAN=0 BUILD=$(MPI_BUILD) $(MPI_BUILD)/bench_mpi
	bash bench/mpi.sh $(MPI_BUILD)/bench_mpi
bench: bench-mpi
