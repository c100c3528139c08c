# tests/fuzz/fuzz.mk: libFuzzer targets (clang only).  Included from the
# Makefile; every variable here starts with FUZZ_ so nothing clashes.
#
#   make fuzz        build bin/fuzz-<name> for each of FUZZ_NAMES
#   make fuzz-run    build, then run each target 20 s on a copy of its corpus
#                    (bash tests/fuzz/run.sh 20); non-zero exit on any crash
#
# The src/ files are compiled again by clang, instrumented, into build/fuzz/
# and put in one archive, so each target links only the objects it uses.

CLANG ?= clang
# e.g. FUZZ_EXTRA_CFLAGS=-DFUZZ_MENU_VALID_UTF8_ITEMS (see fuzz_menu.c)
FUZZ_EXTRA_CFLAGS ?=

FUZZ_DIR     := build/fuzz
FUZZ_PKGS    := libevent libpq hiredis libcurl jansson libsodium
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS   = $(FUZZ_SAN) -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
                -Wno-missing-field-initializers -Isrc $(shell pkg-config --cflags $(FUZZ_PKGS)) \
                $(FUZZ_EXTRA_CFLAGS)
FUZZ_LDLIBS   = $(shell pkg-config --libs $(FUZZ_PKGS)) -lpthread -lm

# What the targets need from src/ (never main.c).
FUZZ_LIB_SRCS := src/ussd/ussd_at.c src/ussd/ussd_hubtel.c src/ussd/ussd_req.c src/base/form.c \
                 src/base/menu.c src/base/gsm7.c src/base/phone.c src/base/util.c src/base/log.c
# the M-Pesa callback and Result parsers (fuzz-mpesa_cb, fuzz-result)
FUZZ_LIB_SRCS += src/net/daraja_parse.c
# the SMS callbacks and command words (fuzz-smscmd, fuzz-dlr)
FUZZ_LIB_SRCS += src/sms/sms_parse.c src/base/input.c
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:src/%.c=$(FUZZ_DIR)/src/%.o)
FUZZ_LIB      := $(FUZZ_DIR)/libchamad-fuzz.a

FUZZ_NAMES    := at hubtel menu text
FUZZ_NAMES    += mpesa_cb
FUZZ_NAMES    += result
FUZZ_NAMES    += smscmd dlr
FUZZ_BINS     := $(FUZZ_NAMES:%=bin/fuzz-%)
FUZZ_T_OBJS   := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%.o)

# V=1 shows the full commands, as in the Makefile.
FUZZ_Q := $(if $(filter 1,$(V)),,@)

# Keep the Makefile's default goal whatever it was before this file.
FUZZ_SAVED_GOAL := $(.DEFAULT_GOAL)

.PHONY: fuzz fuzz-run fuzz-names
fuzz: $(FUZZ_BINS)

# the targets, one per line (tests/fuzz/run.sh and tests/run.py run these)
fuzz-names:
	@printf '%s\n' $(FUZZ_NAMES)

fuzz-run:
	bash tests/fuzz/run.sh 20

$(FUZZ_BINS): bin/fuzz-%: $(FUZZ_DIR)/fuzz_%.o $(FUZZ_LIB)
	@mkdir -p $(@D)
	@echo "  LD    $@"
	$(FUZZ_Q)$(CLANG) $(FUZZ_SAN) -o $@ $^ $(FUZZ_LDLIBS)

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	@rm -f $@
	@echo "  AR    $@"
	$(FUZZ_Q)ar rcs $@ $^

$(FUZZ_LIB_OBJS): $(FUZZ_DIR)/src/%.o: src/%.c
	@mkdir -p $(@D)
	@echo "  CLANG $<"
	$(FUZZ_Q)$(CLANG) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_T_OBJS): $(FUZZ_DIR)/fuzz_%.o: tests/fuzz/fuzz_%.c
	@mkdir -p $(@D)
	@echo "  CLANG $<"
	$(FUZZ_Q)$(CLANG) $(FUZZ_CFLAGS) -Itests/fuzz -MMD -MP -c $< -o $@

.SECONDARY: $(FUZZ_T_OBJS) $(FUZZ_LIB_OBJS)

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_T_OBJS:.o=.d)

.DEFAULT_GOAL := $(FUZZ_SAVED_GOAL)
