# SPDX-License-Identifier: MIT
# mproc -- the two commands of the README, and a few more.
#   make          build the library, tools, examples and benchmarks (runs nothing)
#   make demo     install missing build dependencies, build, run the demo
#   make test     install missing build dependencies, then the whole suite:
#                 normal build, AddressSanitizer+UBSan build, ThreadSanitizer
#                 build of the threaded tests, fuzzers for a bounded time, and
#                 the install/pkg-config/find_package check
#   make bench    build and run the benchmarks (ours beside CPython and the floor)
#   make apiref   the API reference from the header comments: build/apiref/index.html
#   make bench-report  run every benchmark and write bench/report/index.html
#                 with a chart per job (gnuplot)
#   make install PREFIX=/usr/local
BUILD ?= build
PREFIX ?= /usr/local
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all configure deps demo test bench bench-report apiref install clean

all: configure
	cmake --build $(BUILD) -j$(JOBS)

configure:
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

deps:
	@tools/setup-deps.sh

# The demo's output, and one line of build status (the build's log goes to
# a file; on failure its errors are shown).
demo: deps
	@mkdir -p $(BUILD)
	@{ { test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_FLAGS); } \
	   && cmake --build $(BUILD) -j$(JOBS); } >$(BUILD)/build.log 2>&1 \
	 && echo "mproc: built in $(BUILD)/ (log: $(BUILD)/build.log)" \
	 || { grep -E 'error|Error' $(BUILD)/build.log | head -30; tail -20 $(BUILD)/build.log; \
	      echo "mproc: build failed (log: $(BUILD)/build.log)"; exit 1; }
	@./$(BUILD)/examples/demo

test: deps
	@tools/run-tests.sh

bench: all
	tools/run-bench.sh $(BUILD)

bench-report: deps all
	python3 tools/bench_report.py $(BUILD) bench/report

apiref:
	python3 tools/gen_apiref.py $(BUILD)/apiref

install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build build-asan build-tsan build-fuzz
