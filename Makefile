# Wraps the commands the README names. Everything else lives in CMake
# and scripts/.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= 2
# make fuzz: seconds per harness, and which harnesses (all when empty;
# "name:600" gives one harness its own time).
FUZZ_SECONDS   ?= 300
FUZZ_HARNESSES ?=

.PHONY: all deps build build-asan test demo demo-cluster install package fuzz clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DTXM_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j$(JOBS)

# Runs every test twice, plain and under ASan+UBSan, with private servers.
test: build build-asan
	@scripts/check-style
	@scripts/check-format
	@scripts/check-includes
	@scripts/with-servers scripts/run-tests $(BUILD) $(BUILD_ASAN)

# The demos build only the programs they run, quietly (scripts/demo-build).
demo: deps
	@JOBS=$(JOBS) scripts/demo-build $(BUILD)
	@scripts/demo $(BUILD)

# The same example on PostgreSQL primary + standby and a 3-node NATS cluster,
# two instances of each service and two relays per database.
demo-cluster: deps
	@JOBS=$(JOBS) scripts/demo-build $(BUILD)
	@scripts/demo-cluster $(BUILD)

# Installs the headers, libraries, pkg-config file, CMake package, programs
# and example services under PREFIX (cmake/install.cmake lists where).
PREFIX ?= /usr/local
install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

# Builds the Debian package (cmake/package.cmake) with CPack in
# $(BUILD)/package and prints the path of the .deb.
package: build
	@cd $(BUILD) && cpack --config CPackConfig.cmake -B package | \
	    sed -n 's/^CPack: - package: \(.*\) generated\.$$/\1/p'

# Builds the libFuzzer harnesses with clang and runs each for FUZZ_SECONDS
# on one core, one after another; see FUZZING.md. `make test` replays their
# corpora instead and needs no clang.
fuzz:
	@scripts/install-deps --fuzz
	@CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTXM_FUZZ=ON >/dev/null
	@cmake --build $(BUILD_FUZZ) -j$(JOBS) --target fuzz-harnesses
	@tests/fuzz/run-fuzz $(BUILD_FUZZ) $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
