# kiln — the two commands a new user runs: `make demo` and `make test`.
# Everything goes through CMake; this file only names the common paths.
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all setup build test asan demo bench clean format

all: build

setup:
	bash scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# The test command (README): every unit and integration test through ctest.
test: build
	cd $(BUILD) && ctest --output-on-failure -j 2

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: setup
	cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON >/dev/null
	cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j 2 -LE long

demo: build
	bash scripts/demo.sh $(BUILD)

bench: build
	KILN_WITH_BENCH=1 bash scripts/setup.sh
	$(BUILD)/bench_ops
	$(BUILD)/bench_registry
	bash bench/train_vs_torch.sh
	bash bench/portable_vs_native.sh
	bash bench/serve_vs_python.sh
	bash bench/infer_vs_ort.sh
	bash bench/logging_overhead.sh
	bash bench/board.sh
	bash bench/data_vs_torch.sh
	bash bench/resnet_vs_torch.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD)-asan
