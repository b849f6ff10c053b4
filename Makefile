# Fengqiao — the two set-up commands (README): `make run` and `make test`.
.PHONY: run test build bench

# Build (release) and start the server on the embedded defaults: SQLite and ./data,
# HTTP on 127.0.0.1:8080, media on UDP 127.0.0.1:40000. Prints demo invite URLs.
run:
	scripts/deps.sh run
	cargo build --release --locked
	./target/release/fengqiao serve --demo-invites $(if $(CONFIG),--config $(CONFIG))

# Install what the tests need and run every test (see scripts/test.sh).
test:
	scripts/test.sh

build:
	cargo build --release --locked

# Benchmark (not part of `make test`): release build, then loadgen starts
# target/release/fengqiao as a separate process on 127.0.0.1 (ports 0, temp data
# folder) per scenario and drives real webrtc-rs clients. Bounded: 10 s windows,
# a few scenarios. Results: bench/results/<scenario>.json; see bench/README.md.
BENCH_SCENARIOS ?= 1x2,2x4,5x4,10x4,25x4,1to10,1to50
BENCH_SECONDS ?= 10
bench:
	nice -n 10 cargo build --release -p fengqiao -p fengqiao-bench
	./target/release/loadgen --server-bin target/release/fengqiao --scenario $(BENCH_SCENARIOS) --seconds $(BENCH_SECONDS) --out bench/results
