# chamad: ChamaSmart's USSD/SMS daemon.
#
#   make                 build bin/chamad
#   make SANITIZE=1      build bin/chamad-asan (ASan + UBSan, no recovery)
#   make test            install what is missing, build, run every test
#   make test SANITIZE=1 the same suite against the sanitizer build
#   make test JOBS=N     integration tests on N workers (default two per core; 1: one by one)
#   make run             the whole thing, running, with a demo chama
#   make fuzz            build the libFuzzer targets (clang): bin/fuzz-*
#   make fuzz-run        run each of them for 20 s (make test runs 10 s each)
#
PKGS    := libevent libpq hiredis libcurl jansson libsodium
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wpointer-arith -Wundef \
           -Wno-unused-parameter -Wno-missing-field-initializers
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(PKG_CFLAGS) -Isrc $(CFLAGS)
LDLIBS     = $(PKG_LIBS) -lpthread -lm

ifeq ($(SANITIZE),1)
BUILD   := build/asan
BIN     := bin/chamad-asan
UNIT    := bin/unit-tests-asan
DBTEST  := bin/db-tests-asan
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ALL_CFLAGS += $(SAN) -O1
LDFLAGS += $(SAN)
else
BUILD   := build/release
BIN     := bin/chamad
UNIT    := bin/unit-tests
DBTEST  := bin/db-tests
endif

# One folder per layer (see "Layers" in README.md; scripts/layers.sh holds them).
LAYERS   := base net dom ussd sms mpesa ops
SRCS     := $(wildcard src/*.c) $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c))
OBJS     := $(SRCS:src/%.c=$(BUILD)/%.o)
LIB_OBJS := $(filter-out $(BUILD)/main.o,$(OBJS))
T_SRCS   := $(wildcard tests/unit/*.c)
T_OBJS   := $(T_SRCS:tests/unit/%.c=$(BUILD)/t_%.o)
D_SRCS   := $(wildcard tests/db/*.c)
D_OBJS   := $(D_SRCS:tests/db/%.c=$(BUILD)/d_%.o)

.PHONY: all test run clean deps services-start services-stop bench
all: $(BIN) $(UNIT) $(DBTEST)

# V=1 shows the full commands.
ifeq ($(V),1)
Q :=
else
Q := @
endif

$(BIN): $(OBJS)
	@mkdir -p $(@D)
	@echo "  LD    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(UNIT): $(T_OBJS) $(LIB_OBJS)
	@mkdir -p $(@D)
	@echo "  LD    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(DBTEST): $(D_OBJS) $(LIB_OBJS)
	@mkdir -p $(@D)
	@echo "  LD    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: src/%.c
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/t_%.o: tests/unit/%.c
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/unit -MMD -MP -c $< -o $@

$(BUILD)/d_%.o: tests/db/%.c
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/unit -MMD -MP -c $< -o $@

-include $(OBJS:.o=.d) $(T_OBJS:.o=.d) $(D_OBJS:.o=.d)

deps:
	bash scripts/deps.sh

test:
	bash scripts/test.sh $(if $(filter 1,$(SANITIZE)),--sanitize) $(if $(JOBS),-j $(JOBS))

run:
	bash scripts/run.sh

bench:
	bash bench/run.sh
	bash bench/ussd.sh
	bash bench/sms.sh
	bash bench/sms.sh 10000 10000 1000
	bash bench/money.sh
	bash bench/ledger.sh
	bash bench/contribute.sh
	bash bench/login.sh
	bash bench/nav.sh

clean:
	rm -rf build bin

include tests/fuzz/fuzz.mk
